//! `opsd plugin new`: a plugin project that builds, tests and runs as it
//! comes, in Rust, Python or JavaScript. The templates, the WIT they need
//! and the language's SDK are compiled into the binary, so it works
//! offline and always matches the contract this opsd speaks.

use std::path::{Path, PathBuf};

/// The contract this binary implements.
const PLUGIN_WIT: &str = include_str!("../../wit/plugin.wit");
/// WASI 0.2.12 packages the JavaScript template imports directly.
const WASI_FILESYSTEM: &str = include_str!("../../examples/plugins/wit/deps/filesystem.wit");
const WASI_IO: &str = include_str!("../../examples/plugins/wit/deps/io.wit");
const WASI_CLOCKS: &str = include_str!("../../examples/plugins/wit/deps/clocks.wit");
/// The bundling build script the JavaScript example uses.
const JS_BUILD: &str = include_str!("../../examples/plugins/cache-clean/build.mjs");

const RUST_CARGO: &str = include_str!("../templates/rust/Cargo.toml.tmpl");
const RUST_LIB: &str = include_str!("../templates/rust/src_lib.rs");
/// The manifest of the SDK copy a Rust project gets: the SDK's own
/// inherits from opsd's workspace, which the project does not have.
const RUST_SDK_CARGO: &str = include_str!("../templates/rust/opsd-sdk.Cargo.toml.tmpl");
/// opsd-sdk's sources (`plugins/sdk/src`), copied into a Rust project's
/// `opsd-sdk/src` so it builds offline against the contract this opsd
/// speaks. A test checks that none is missing.
const SDK_SOURCES: &[(&str, &str)] = &[
    ("lib.rs", include_str!("../../plugins/sdk/src/lib.rs")),
    ("config.rs", include_str!("../../plugins/sdk/src/config.rs")),
    ("fsinfo.rs", include_str!("../../plugins/sdk/src/fsinfo.rs")),
    ("http.rs", include_str!("../../plugins/sdk/src/http.rs")),
    (
        "outcome.rs",
        include_str!("../../plugins/sdk/src/outcome.rs"),
    ),
    ("pg.rs", include_str!("../../plugins/sdk/src/pg.rs")),
    (
        "process.rs",
        include_str!("../../plugins/sdk/src/process.rs"),
    ),
    ("schema.rs", include_str!("../../plugins/sdk/src/schema.rs")),
    ("units.rs", include_str!("../../plugins/sdk/src/units.rs")),
];
/// Where the SDK finds the WIT in opsd's tree, and in a project (which
/// holds it in `wit/` beside the `opsd-sdk/` copy).
const SDK_WIT_IN_TREE: &str = r#"path: "../../wit","#;
const SDK_WIT_IN_PROJECT: &str = r#"path: "../wit","#;
/// The Python SDK, one module (`sdk/python`), copied into Python projects.
pub const PY_SDK: &str = include_str!("../../sdk/python/opsd_sdk.py");
/// The JavaScript SDK, one module (`sdk/js`), copied into JS projects.
pub const JS_SDK: &str = include_str!("../../sdk/js/opsd-sdk.js");
const PY_APP: &str = include_str!("../templates/python/app.py");
const PY_LOGIC: &str = include_str!("../templates/python/logic.py");
const PY_TEST: &str = include_str!("../templates/python/test_logic.py");
const JS_PLUGIN: &str = include_str!("../templates/js/plugin.js");
const JS_LOGIC: &str = include_str!("../templates/js/logic.js");
const JS_TEST: &str = include_str!("../templates/js/logic.test.js");
const JS_PACKAGE: &str = include_str!("../templates/js/package.json");
const JS_WORLD: &str = include_str!("../templates/js/world.wit");

/// The componentize-py the Python template is built and tested with.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// Languages a new plugin can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// Why a project could not be created; the CLI prints it as is.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "`{0}` is not a usable plugin name: use lowercase letters, digits and dashes, starting with a letter (like `disk-report`), at most 40 characters"
    )]
    BadName(String),
    #[error("{0} already exists; pick another name or --dir, opsd never overwrites files")]
    Exists(PathBuf),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// True for names that are a WIT identifier, a crate name and a file name
/// alike: `disk-report`, `check2`.
pub fn valid_name(name: &str) -> bool {
    name.len() <= 40
        && !name.is_empty()
        && name.split('-').all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// The files of a new project: (relative path, contents).
pub fn files(name: &str, lang: Lang) -> Vec<(String, String)> {
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{opsd_version}}", env!("CARGO_PKG_VERSION"))
    };
    let mut out: Vec<(String, String)> = match lang {
        Lang::Rust => {
            let mut files = vec![
                ("Cargo.toml".into(), fill(RUST_CARGO)),
                ("src/lib.rs".into(), fill(RUST_LIB)),
                ("wit/plugin.wit".into(), PLUGIN_WIT.into()),
                (".gitignore".into(), "/target\n*.wasm\n".into()),
                ("opsd-sdk/Cargo.toml".into(), fill(RUST_SDK_CARGO)),
            ];
            for (file, source) in SDK_SOURCES {
                let source = if *file == "lib.rs" {
                    source.replace(SDK_WIT_IN_TREE, SDK_WIT_IN_PROJECT)
                } else {
                    (*source).to_owned()
                };
                files.push((format!("opsd-sdk/src/{file}"), source));
            }
            files
        }
        Lang::Python => vec![
            ("app.py".into(), fill(PY_APP)),
            ("logic.py".into(), fill(PY_LOGIC)),
            ("test_logic.py".into(), fill(PY_TEST)),
            ("opsd_sdk.py".into(), PY_SDK.into()),
            ("wit/plugin.wit".into(), PLUGIN_WIT.into()),
            (".gitignore".into(), "__pycache__/\n*.wasm\n".into()),
        ],
        Lang::Js => vec![
            ("plugin.js".into(), fill(JS_PLUGIN)),
            ("logic.js".into(), fill(JS_LOGIC)),
            ("logic.test.js".into(), fill(JS_TEST)),
            ("opsd-sdk.js".into(), JS_SDK.into()),
            ("package.json".into(), fill(JS_PACKAGE)),
            ("build.mjs".into(), JS_BUILD.into()),
            ("wit/world.wit".into(), fill(JS_WORLD)),
            ("wit/deps/opsd-plugin.wit".into(), PLUGIN_WIT.into()),
            ("wit/deps/filesystem.wit".into(), WASI_FILESYSTEM.into()),
            ("wit/deps/io.wit".into(), WASI_IO.into()),
            ("wit/deps/clocks.wit".into(), WASI_CLOCKS.into()),
            (".gitignore".into(), "node_modules/\n*.wasm\n".into()),
        ],
    };
    out.push(("README.md".into(), readme(name, lang)));
    out
}

/// The built component's path inside the project.
pub fn artifact(name: &str, lang: Lang) -> String {
    match lang {
        Lang::Rust => format!(
            "target/wasm32-wasip2/release/{}.wasm",
            name.replace('-', "_")
        ),
        Lang::Python | Lang::Js => format!("{name}.wasm"),
    }
}

/// What `opsd plugin build` and `opsd plugin test` run for a project, for
/// its README: the same steps by hand.
pub fn steps(name: &str, lang: Lang) -> (String, String) {
    match lang {
        Lang::Rust => (
            "rustup target add wasm32-wasip2\ncargo build --release --target wasm32-wasip2".into(),
            "cargo test".into(),
        ),
        Lang::Python => (
            format!(
                "python3 -m venv .venv && . .venv/bin/activate\npip install {COMPONENTIZE_PY}\ncomponentize-py -d wit -w plugin componentize app -o {name}.wasm"
            ),
            "python -m unittest".into(),
        ),
        Lang::Js => ("npm install\nnpm run build".into(), "npm test".into()),
    }
}

fn readme(name: &str, lang: Lang) -> String {
    let (build, test) = steps(name, lang);
    let toolchain = match lang {
        Lang::Rust => "adds the wasm32-wasip2 target with rustup if it is missing",
        Lang::Python => "makes `.venv` and installs componentize-py into it on first use",
        Lang::Js => "runs `npm install` on first use (`node_modules`)",
    };
    let wasm = artifact(name, lang);
    let contract = match lang {
        Lang::Rust | Lang::Python => "`wit/plugin.wit` (opsd:plugin)",
        Lang::Js => {
            "`wit/deps/opsd-plugin.wit` (opsd:plugin); the world this plugin\n\
             builds for, `wit/world.wit`, adds the WASI filesystem"
        }
    };
    let sdk = match lang {
        Lang::Rust => {
            "\nIt uses opsd-sdk, the Rust side of the contract: `opsd-sdk/` is a copy\n\
             of the SDK of the opsd that made this project, so it builds offline.\n\
             To follow opsd's source instead, change the `opsd-sdk` dependency in\n\
             Cargo.toml to a git dependency on opsd's repository (the crate is in\n\
             its plugins/sdk) or a path to a checkout's plugins/sdk, and delete\n\
             `opsd-sdk/`.\n"
        }
        Lang::Python => {
            "\nIt uses opsd_sdk.py, the Python side of the contract (config into a\n\
             dataclass, outcomes, logging, programs, files): a copy of the SDK of\n\
             the opsd that made this project (sdk/python in opsd's source). The\n\
             bindings it wraps are the `wit_world` module componentize-py makes\n\
             from `wit/`.\n"
        }
        Lang::Js => {
            "\nIt uses opsd-sdk.js, the JavaScript side of the contract (config\n\
             checks, outcomes, logging, programs, and `fs` over the granted\n\
             directories, with 64-bit values as Numbers and host errors as\n\
             ordinary Errors): a copy of the SDK of the opsd that made this\n\
             project (sdk/js in opsd's source). Its `fs` needs the world to\n\
             import wasi:filesystem/preopens, as `wit/world.wit` does.\n"
        }
    };
    format!(
        r#"# {name}

An opsd plugin, made by `opsd plugin new`. It measures a directory against
a byte budget; replace `run` with your chore. The contract is
{contract}. opsd's docs/plugin-guide.md explains it, and
docs/host-interfaces.md lists every host function and record in each
language.
{sdk}
Test the logic (no WebAssembly needed), then build the component:

```sh
opsd plugin test
opsd plugin build
```

`opsd plugin build` {toolchain}, builds `{wasm}` and checks it exactly as
opsd checks a dropped-in plugin (it prints its size, contract and compile
time, or why opsd would refuse it). By hand, the same steps are:

```sh
{build}
{test}
```

Install: copy `{wasm}` into opsd's plugin directory (`DATA_DIR/plugins`); a
running daemon picks it up within a second (`opsd plugins list`). Then give
it a job:

```toml
[[job]]
name = "{name}"
plugin = "{name}"
schedule = "0 * * * *"
[job.grants]
fs = [{{ host = "/srv/data", guest = "/data", access = "ro" }}]
[job.config]
dir = "/data"
max_bytes = 1000000000
```

and `opsd run {name}`.
"#
    )
}

/// Writes a new project for `name` into `dir` (which must not exist);
/// returns the files written.
pub fn create(name: &str, lang: Lang, dir: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.to_owned()));
    }
    let mut written = Vec::new();
    for (rel, body) in files(name, lang) {
        let path = dir.join(rel);
        let io = |source| ScaffoldError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, body).map_err(io)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_wit_identifiers() {
        for ok in ["disk-report", "check2", "a"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "Disk", "2check", "a--b", "a-", "a_b", "a-2b", "a/b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for (path, body) in files("disk-report", lang) {
                assert!(!body.contains("{{"), "{lang:?} {path}");
            }
        }
    }

    /// The Rust project's copy of the SDK is the whole SDK, finds the WIT
    /// in the project, and asks for the versions opsd builds it with.
    #[test]
    fn the_rust_project_holds_the_whole_sdk() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk");
        let mut on_disk: Vec<String> = std::fs::read_dir(sdk.join("src"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut copied: Vec<String> = SDK_SOURCES.iter().map(|(f, _)| f.to_string()).collect();
        copied.sort();
        assert_eq!(copied, on_disk, "SDK_SOURCES must list plugins/sdk/src");

        let files = files("disk-report", Lang::Rust);
        let lib = &files
            .iter()
            .find(|(p, _)| p == "opsd-sdk/src/lib.rs")
            .unwrap()
            .1;
        assert_eq!(lib.matches(SDK_WIT_IN_PROJECT).count(), 1);
        assert!(!lib.contains(SDK_WIT_IN_TREE));

        let toml = |path: &Path| -> toml::Table {
            toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        };
        let workspace = toml(&sdk.join("../../Cargo.toml"));
        let shared = &workspace["workspace"]["dependencies"];
        let own = toml(&sdk.join("Cargo.toml"));
        let manifest = &files
            .iter()
            .find(|(p, _)| p == "opsd-sdk/Cargo.toml")
            .unwrap()
            .1;
        let copy: toml::Table = toml::from_str(manifest).unwrap();
        let version = |dep: &toml::Value| match dep {
            toml::Value::String(v) => v.clone(),
            t => t
                .get("version")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned(),
        };
        let own_deps = own["dependencies"].as_table().unwrap();
        let copy_deps = copy["dependencies"].as_table().unwrap();
        assert_eq!(
            own_deps.keys().collect::<Vec<_>>(),
            copy_deps.keys().collect::<Vec<_>>()
        );
        for (name, dep) in own_deps {
            let want = if dep.get("workspace").is_some() {
                version(&shared[name.as_str()])
            } else {
                version(dep)
            };
            assert_eq!(version(&copy_deps[name.as_str()]), want, "{name}");
        }
    }

    /// Python and JavaScript projects carry their SDK, byte for byte the
    /// one in `sdk/`, and the examples use that same file.
    #[test]
    fn python_and_js_projects_hold_their_sdk() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for (lang, file, source, example) in [
            (
                Lang::Python,
                "opsd_sdk.py",
                "sdk/python/opsd_sdk.py",
                "examples/plugins/http-check/opsd_sdk.py",
            ),
            (
                Lang::Js,
                "opsd-sdk.js",
                "sdk/js/opsd-sdk.js",
                "examples/plugins/cache-clean/opsd-sdk.js",
            ),
        ] {
            let files = files("disk-report", lang);
            let copy = &files.iter().find(|(p, _)| p == file).unwrap().1;
            let on_disk = std::fs::read_to_string(root.join(source)).unwrap();
            assert_eq!(copy, &on_disk, "{lang:?}");
            assert_eq!(
                std::fs::read_to_string(root.join(example)).unwrap(),
                on_disk,
                "{example}"
            );
            let readme = &files.iter().find(|(p, _)| p == "README.md").unwrap().1;
            assert!(readme.contains(file), "{lang:?} README names {file}");
            let code = files
                .iter()
                .filter(|(p, _)| p.ends_with(".py") || p.ends_with(".js"))
                .filter(|(p, _)| p != file)
                .any(|(_, body)| body.contains("opsd_sdk") || body.contains("./opsd-sdk.js"));
            assert!(code, "{lang:?}: the template uses its SDK");
        }
    }

    #[test]
    fn an_existing_directory_is_never_touched() {
        let dir = tempfile::tempdir().unwrap();
        let err = create("x", Lang::Rust, dir.path()).unwrap_err();
        assert!(matches!(err, ScaffoldError::Exists(_)), "{err}");
        let err = create("Bad", Lang::Rust, &dir.path().join("new")).unwrap_err();
        assert!(matches!(err, ScaffoldError::BadName(_)), "{err}");
    }
}
