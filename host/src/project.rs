//! `opsd plugin build` and `opsd plugin test`: one command per step, in
//! any of the three languages, the way `spin build` is. The language is
//! told from the project's files; its toolchain is found or installed in
//! a place of the project's own (the rustup target, `.venv`,
//! `node_modules`), never system-wide; the built component is checked
//! exactly as a dropped-in file would be.

use crate::scaffold::{COMPONENTIZE_PY, Lang};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a project could not be built or tested; printed as is.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(
        "{0} is not a plugin project opsd knows: it needs Cargo.toml (Rust), package.json (JavaScript) or app.py (Python, componentize-py); `opsd plugin new NAME --lang LANG` makes one"
    )]
    Unknown(PathBuf),
    #[error("{0}: {1}")]
    Manifest(PathBuf, String),
    #[error("`{program}` is needed to {why} and could not be started ({error}); {install}")]
    Missing {
        program: String,
        why: String,
        error: String,
        install: String,
    },
    #[error("{what} failed ({status}); its output is above")]
    Failed { what: String, status: String },
    #[error("the build reported no component (.wasm): {0}")]
    NoArtifact(String),
}

/// A plugin project on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub dir: PathBuf,
    pub lang: Lang,
    /// The name the component is built under.
    pub name: String,
}

impl Project {
    /// Tells the language from the files in `dir`.
    pub fn detect(dir: &Path) -> Result<Project, ProjectError> {
        let dir = dir.to_owned();
        let lang = if dir.join("Cargo.toml").is_file() {
            Lang::Rust
        } else if dir.join("package.json").is_file() {
            Lang::Js
        } else if dir.join("app.py").is_file() {
            Lang::Python
        } else {
            return Err(ProjectError::Unknown(dir));
        };
        let name = match lang {
            Lang::Rust => manifest_name(&dir.join("Cargo.toml"), |t| {
                let v: toml::Table = toml::from_str(t).map_err(|e| e.to_string())?;
                v.get("package")
                    .and_then(|p| p.get("name"))
                    .and_then(|n| n.as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| "no [package] name".to_owned())
            })?,
            Lang::Js => manifest_name(&dir.join("package.json"), |t| {
                let v: serde_json::Value = serde_json::from_str(t).map_err(|e| e.to_string())?;
                v["name"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| "no \"name\"".to_owned())
            })?,
            Lang::Python => std::fs::canonicalize(&dir)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .filter(|n| crate::scaffold::valid_name(n))
                .unwrap_or_else(|| "plugin".into()),
        };
        Ok(Project { dir, lang, name })
    }

    /// Runs the project's own tests (`cargo test`, `python -m unittest`,
    /// `npm test`), installing what they need first.
    pub fn test(&self) -> Result<(), ProjectError> {
        match self.lang {
            Lang::Rust => self.run("cargo", &["test"], "cargo test", RUST_INSTALL),
            Lang::Python => {
                let python = self.venv()?;
                self.run_path(&python, &["-m", "unittest", "-v"], "python -m unittest")
            }
            Lang::Js => {
                self.node_modules()?;
                self.run("npm", &["test"], "npm test", NODE_INSTALL)
            }
        }
    }

    /// Builds a release component; returns its path.
    pub fn build(&self) -> Result<PathBuf, ProjectError> {
        match self.lang {
            Lang::Rust => self.build_rust(),
            Lang::Python => {
                let python = self.venv()?;
                let componentize = python.with_file_name("componentize-py");
                if !componentize.exists() {
                    eprintln!("opsd: installing {COMPONENTIZE_PY} into .venv");
                    self.run_path(
                        &python,
                        &[
                            "-m",
                            "pip",
                            "install",
                            "--quiet",
                            "--disable-pip-version-check",
                            COMPONENTIZE_PY,
                        ],
                        &format!("pip install {COMPONENTIZE_PY}"),
                    )?;
                }
                let out = format!("{}.wasm", self.name);
                self.run_path(
                    &componentize,
                    &[
                        "-d",
                        "wit",
                        "-w",
                        "plugin",
                        "componentize",
                        "app",
                        "-o",
                        &out,
                    ],
                    "componentize-py",
                )?;
                Ok(self.dir.join(out))
            }
            Lang::Js => {
                self.node_modules()?;
                self.run("npm", &["run", "build"], "npm run build", NODE_INSTALL)?;
                let out = self.dir.join(format!("{}.wasm", self.name));
                if out.is_file() {
                    Ok(out)
                } else {
                    Err(ProjectError::NoArtifact(format!(
                        "`npm run build` wrote no {}; the build script in package.json must write NAME.wasm",
                        out.display()
                    )))
                }
            }
        }
    }

    fn build_rust(&self) -> Result<PathBuf, ProjectError> {
        let installed = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .current_dir(&self.dir)
            .output();
        if let Ok(out) = installed
            && out.status.success()
            && !String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2")
        {
            eprintln!("opsd: adding the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
            self.run(
                "rustup",
                &["target", "add", "wasm32-wasip2"],
                "rustup target add wasm32-wasip2",
                RUST_INSTALL,
            )?;
        }
        let out = Command::new("cargo")
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(&self.dir)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| missing("cargo", "build a Rust plugin", e, RUST_INSTALL))?;
        if !out.status.success() {
            return Err(ProjectError::Failed {
                what: "cargo build --release --target wasm32-wasip2".into(),
                status: out.status.to_string(),
            });
        }
        // The artifact cargo names, wherever the target directory is.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact")
            .filter_map(|m| {
                m["filenames"].as_array().and_then(|f| {
                    f.iter()
                        .filter_map(|f| f.as_str())
                        .find(|f| f.ends_with(".wasm"))
                        .map(PathBuf::from)
                })
            })
            .next_back()
            .ok_or_else(|| {
                ProjectError::NoArtifact(
                    "no crate built a .wasm; a plugin crate needs crate-type = [\"cdylib\"] in [lib]"
                        .into(),
                )
            })
    }

    /// The project's `.venv`, made on first use; returns its python.
    fn venv(&self) -> Result<PathBuf, ProjectError> {
        let python = self.dir.join(".venv/bin/python");
        if !python.exists() {
            eprintln!("opsd: creating .venv (python3 -m venv .venv)");
            self.run(
                "python3",
                &["-m", "venv", ".venv"],
                "python3 -m venv .venv",
                "install Python 3 with venv (Debian: apt install python3-venv)",
            )?;
        }
        Ok(python)
    }

    /// The project's `node_modules`, installed from package.json on first use.
    fn node_modules(&self) -> Result<(), ProjectError> {
        if !self.dir.join("node_modules").exists() {
            eprintln!("opsd: installing the project's npm packages (npm install)");
            self.run(
                "npm",
                &["install", "--no-audit", "--no-fund"],
                "npm install",
                NODE_INSTALL,
            )?;
        }
        Ok(())
    }

    fn run(
        &self,
        program: &str,
        args: &[&str],
        what: &str,
        install: &str,
    ) -> Result<(), ProjectError> {
        let status = Command::new(program)
            .args(args)
            .current_dir(&self.dir)
            .stdout(std::process::Stdio::inherit())
            .status()
            .map_err(|e| missing(program, what, e, install))?;
        if status.success() {
            Ok(())
        } else {
            Err(ProjectError::Failed {
                what: what.into(),
                status: status.to_string(),
            })
        }
    }

    fn run_path(&self, program: &Path, args: &[&str], what: &str) -> Result<(), ProjectError> {
        self.run(
            &program.to_string_lossy(),
            args,
            what,
            "delete .venv and run the command again to remake it",
        )
    }
}

const RUST_INSTALL: &str = "install Rust with rustup (https://rustup.rs)";
const NODE_INSTALL: &str = "install Node.js 20.19 or later with npm";

fn missing(program: &str, why: &str, e: std::io::Error, install: &str) -> ProjectError {
    ProjectError::Missing {
        program: program.into(),
        why: why.into(),
        error: e.to_string(),
        install: install.into(),
    }
}

fn manifest_name(
    path: &Path,
    parse: impl Fn(&str) -> Result<String, String>,
) -> Result<String, ProjectError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ProjectError::Manifest(path.to_owned(), e.to_string()))?;
    parse(&text).map_err(|e| ProjectError::Manifest(path.to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_and_name_come_from_the_projects_files() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("disk-report");
            crate::scaffold::create("disk-report", lang, &dir).unwrap();
            let p = Project::detect(&dir).unwrap();
            assert_eq!((p.lang, p.name.as_str()), (lang, "disk-report"));
        }
        let empty = tempfile::tempdir().unwrap();
        let e = Project::detect(empty.path()).unwrap_err().to_string();
        assert!(
            e.contains("is not a plugin project") && e.contains("opsd plugin new"),
            "{e}"
        );
    }
}
