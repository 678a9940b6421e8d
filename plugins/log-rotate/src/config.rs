//! The job's `[job.config]` table. Either it points at logrotate
//! configuration files (`logrotate_conf`), which are read as they are, or
//! it is itself one log set written in TOML, with keys named after
//! logrotate's directives so an operator's knowledge carries over.

use crate::conf::LogSet;
use crate::directives::{self, Criterion, ModeOwner, Options, Script};
use serde::Deserialize;

/// One path or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A size as logrotate writes it (`100k`, `10M`) or plain bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

impl RawSize {
    fn bytes(&self, key: &str) -> Result<u64, String> {
        match self {
            RawSize::Bytes(n) => Ok(*n),
            RawSize::Text(t) => directives::parse_size(t).map_err(|e| format!("`{key}`: {e}")),
        }
    }
}

/// `create = true`, or a table with mode/owner/group.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawCreate {
    Flag(bool),
    Spec {
        #[serde(default)]
        mode: Option<String>,
        #[serde(default)]
        owner: Option<String>,
        #[serde(default)]
        group: Option<String>,
    },
}

impl RawCreate {
    fn resolve(&self, key: &str) -> Result<Option<ModeOwner>, String> {
        match self {
            RawCreate::Flag(false) => Ok(None),
            RawCreate::Flag(true) => Ok(Some(ModeOwner::default())),
            RawCreate::Spec { mode, owner, group } => {
                let mode = mode
                    .as_deref()
                    .map(|m| {
                        u32::from_str_radix(m, 8)
                            .ok()
                            .filter(|m| *m <= 0o7777)
                            .ok_or_else(|| {
                                format!(
                                    "`{key}.mode` = \"{m}\" is not an octal mode such as \"0640\""
                                )
                            })
                    })
                    .transpose()?;
                Ok(Some(ModeOwner {
                    mode,
                    owner: owner.clone(),
                    group: group.clone(),
                }))
            }
        }
    }
}

/// A script: shell text (run through `sh` only when it needs one) or an
/// argv list (never through a shell).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawScript {
    Text(String),
    Argv(Vec<String>),
}

impl RawScript {
    fn resolve(&self, key: &str) -> Script {
        let origin = format!("[job.config] {key}");
        match self {
            RawScript::Text(body) => Script::Text {
                body: body.clone(),
                origin,
            },
            RawScript::Argv(argv) => Script::Argv {
                argv: argv.clone(),
                origin,
            },
        }
    }
}

/// How often, by calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

/// `[job.config]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rotate whatever the criteria say, as `logrotate -f` does (usually
    /// for one run: `opsd run JOB --set force=true`).
    #[serde(default)]
    pub force: bool,
    /// Guest paths of logrotate config files or directories.
    #[serde(default)]
    pub logrotate_conf: Option<OneOrMany>,
    /// Glob patterns of guest paths, such as `/logs/*.log`.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// Where rotation times are remembered; a guest path in a read-write
    /// grant.
    #[serde(default)]
    pub state_file: Option<String>,
    #[serde(default)]
    pub rotate: Option<i64>,
    #[serde(default)]
    pub frequency: Option<Frequency>,
    #[serde(default)]
    pub weekday: Option<u32>,
    #[serde(default)]
    pub size: Option<RawSize>,
    #[serde(default)]
    pub minsize: Option<RawSize>,
    #[serde(default)]
    pub maxsize: Option<RawSize>,
    #[serde(default)]
    pub compress: bool,
    #[serde(default)]
    pub delaycompress: bool,
    #[serde(default)]
    pub compresslevel: Option<u32>,
    #[serde(default)]
    pub compresscmd: Option<String>,
    #[serde(default)]
    pub compressoptions: Option<Vec<String>>,
    #[serde(default)]
    pub compressext: Option<String>,
    #[serde(default)]
    pub copytruncate: bool,
    #[serde(default)]
    pub copy: bool,
    #[serde(default)]
    pub create: Option<RawCreate>,
    #[serde(default)]
    pub createolddir: Option<RawCreate>,
    #[serde(default)]
    pub olddir: Option<String>,
    #[serde(default)]
    pub dateext: bool,
    #[serde(default)]
    pub dateformat: Option<String>,
    #[serde(default)]
    pub dateyesterday: bool,
    #[serde(default)]
    pub extension: Option<String>,
    #[serde(default)]
    pub addextension: Option<String>,
    #[serde(default)]
    pub maxage: Option<u64>,
    #[serde(default)]
    pub minage: Option<u64>,
    #[serde(default)]
    pub missingok: bool,
    #[serde(default)]
    pub notifempty: bool,
    #[serde(default)]
    pub start: Option<u64>,
    #[serde(default)]
    pub sharedscripts: bool,
    #[serde(default)]
    pub allowhardlink: bool,
    #[serde(default)]
    pub prerotate: Option<RawScript>,
    #[serde(default)]
    pub postrotate: Option<RawScript>,
    #[serde(default)]
    pub firstaction: Option<RawScript>,
    #[serde(default)]
    pub lastaction: Option<RawScript>,
    #[serde(default)]
    pub preremove: Option<RawScript>,
}

/// Where the log sets come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// logrotate config paths, read at run time.
    Conf(Vec<String>),
    /// The TOML table's single log set; its patterns are expanded at run
    /// time.
    Inline {
        patterns: Vec<String>,
        opts: Box<Options>,
    },
}

/// A validated job config.
#[derive(Debug, Clone)]
pub struct Job {
    pub source: Source,
    pub state_file: String,
    /// The state file every job over a directory shared before each had
    /// its own: read once when the job's own does not exist yet, so an
    /// upgrade keeps the rotation times.
    pub shared_state_file: Option<String>,
    /// Rotate every log whatever its criteria (`logrotate -f`).
    pub force: bool,
}

/// The prefix of every file log-rotate keeps beside the logs (state,
/// its temporary copies and its lock): never taken for a log.
pub const STATE_PREFIX: &str = ".opsd-logrotate";

/// Parses and validates the job's config JSON. With `logrotate_conf`,
/// directive keys are refused by name: they belong in that file.
pub fn parse_job(json: &str, job_name: &str) -> Result<Job, String> {
    let value: serde_json::Value = opsd_sdk::config::parse(json)?;
    if let Some(table) = value.as_object()
        && table.contains_key("logrotate_conf")
        && let Some(key) = table.keys().find(|k| {
            !matches!(
                k.as_str(),
                "logrotate_conf" | "state_file" | "paths" | "force"
            )
        })
    {
        return Err(format!(
            "`{key}` is set with `logrotate_conf`: directives belong in the logrotate config file, not in [job.config]"
        ));
    }
    let cfg: Config = opsd_sdk::config::from_value(value)?;
    cfg.validate(job_name)
}

impl Config {
    /// Checks what serde cannot and turns the table into a [`Job`].
    pub fn validate(&self, job_name: &str) -> Result<Job, String> {
        if let Some(conf) = &self.logrotate_conf {
            if self.paths.is_some() {
                return Err("`logrotate_conf` and `paths` are both set: the logrotate config names the logs; drop `paths`".into());
            }

            let files = conf.list();
            if files.is_empty() {
                return Err(
                    "`logrotate_conf` is empty: name a file such as \"/etc/logrotate.conf\"".into(),
                );
            }
            for f in &files {
                if !f.starts_with('/') {
                    return Err(format!(
                        "logrotate_conf `{f}` is relative: write the guest path, such as \"/etc/logrotate.conf\""
                    ));
                }
            }
            let Some(state_file) = self.state_file.clone() else {
                return Err("`logrotate_conf` needs `state_file`, a guest path in a read-write grant such as \"/var/lib/opsd/logrotate.status\"".into());
            };
            return Ok(Job {
                source: Source::Conf(files),
                state_file,
                shared_state_file: None,
                force: self.force,
            });
        }
        let Some(paths) = &self.paths else {
            return Err("set `paths` (glob patterns such as [\"/logs/*.log\"]) or `logrotate_conf` (a logrotate config file)".into());
        };
        if paths.is_empty() {
            return Err("`paths` is empty: list glob patterns such as \"/logs/*.log\"".into());
        }
        for p in paths {
            if !p.starts_with('/') {
                return Err(format!(
                    "path pattern `{p}` is relative: write the guest path, such as \"/logs/*.log\""
                ));
            }
            glob::Pattern::new(p).map_err(|e| format!("path pattern `{p}`: {e}"))?;
        }
        let opts = self.options()?;
        // By default each job keeps its own state beside the first
        // pattern's logs: jobs over one directory never write one file.
        let first = &paths[0];
        let dir = match first.rfind('/') {
            Some(0) | None => "",
            Some(i) => &first[..i],
        };
        let (state_file, shared_state_file) = match &self.state_file {
            Some(f) => (f.clone(), None),
            None => (
                format!("{dir}/{STATE_PREFIX}.{job_name}.status"),
                Some(format!("{dir}/{STATE_PREFIX}.status")),
            ),
        };
        Ok(Job {
            source: Source::Inline {
                patterns: paths.clone(),
                opts: Box::new(opts),
            },
            state_file,
            shared_state_file,
            force: self.force,
        })
    }

    fn options(&self) -> Result<Options, String> {
        let mut o = Options {
            // Debian's /etc/logrotate.conf keeps four generations.
            rotate: self.rotate.unwrap_or(4),
            criterion: Criterion::EveryRun,
            skip_rotated_names: true,
            ..Options::default()
        };
        if o.rotate < -1 {
            return Err(format!(
                "`rotate` = {}: write a count, 0 to keep none, or -1 to keep all",
                o.rotate
            ));
        }
        if let Some(f) = self.frequency {
            o.criterion = match f {
                Frequency::Hourly => Criterion::Hourly,
                Frequency::Daily => Criterion::Daily,
                Frequency::Weekly => Criterion::Weekly(self.weekday.unwrap_or(0)),
                Frequency::Monthly => Criterion::Monthly,
                Frequency::Yearly => Criterion::Yearly,
            };
        }
        if let Some(w) = self.weekday {
            if self.frequency != Some(Frequency::Weekly) {
                return Err("`weekday` only goes with frequency = \"weekly\"".into());
            }
            if w > 7 {
                return Err(format!(
                    "`weekday` = {w}: write 0-6 (0 is Sunday), or 7 for \"7 days after the last rotation\""
                ));
            }
        }
        if let Some(s) = &self.size {
            if self.frequency.is_some() {
                return Err("`size` and `frequency` are both set: `size` rotates by size alone; use `maxsize` to rotate by calendar and also when too big".into());
            }
            o.criterion = Criterion::Size(s.bytes("size")?);
        }
        if let Some(s) = &self.minsize {
            o.minsize = s.bytes("minsize")?;
        }
        if let Some(s) = &self.maxsize {
            o.maxsize = s.bytes("maxsize")?;
        }
        o.compress = self.compress;
        o.delaycompress = self.delaycompress;
        if let Some(cmd) = &self.compresscmd {
            let base = cmd.rsplit('/').next().unwrap_or(cmd);
            o.compress_ext = directives::ext_for_command(base).map(str::to_owned);
            o.compress_cmd = Some(cmd.clone());
        }
        if let Some(opts) = &self.compressoptions {
            o.compress_options = opts.clone();
        }
        if let Some(level) = self.compresslevel {
            if !(1..=9).contains(&level) {
                return Err(format!(
                    "`compresslevel` = {level}: write 1 (fastest) to 9 (smallest)"
                ));
            }
            o.compress_options = vec![format!("-{level}")];
        }
        if let Some(ext) = &self.compressext {
            o.compress_ext = Some(ext.clone());
        }
        if self.copytruncate && self.copy {
            return Err("`copy` and `copytruncate` are both set: pick one".into());
        }
        o.copytruncate = self.copytruncate;
        o.copy = self.copy;
        if let Some(c) = &self.create {
            o.create = c.resolve("create")?;
            if o.create.is_some() && (o.copy || o.copytruncate) {
                return Err("`create` does nothing with `copy`/`copytruncate` (the log stays in place): drop one".into());
            }
        }
        if let Some(c) = &self.createolddir {
            o.createolddir = c.resolve("createolddir")?;
        }
        o.olddir = self.olddir.clone();
        o.dateext = self.dateext;
        o.dateformat = self.dateformat.clone();
        o.dateyesterday = self.dateyesterday;
        o.extension = self.extension.clone();
        o.addextension = self.addextension.clone();
        o.maxage = self.maxage.unwrap_or(0);
        o.minage = self.minage.unwrap_or(0);
        o.missingok = self.missingok;
        o.ifempty = !self.notifempty;
        o.start = self.start.unwrap_or(1);
        o.sharedscripts = self.sharedscripts;
        o.allowhardlink = self.allowhardlink;
        o.prerotate = self.prerotate.as_ref().map(|s| s.resolve("prerotate"));
        o.postrotate = self.postrotate.as_ref().map(|s| s.resolve("postrotate"));
        o.firstaction = self.firstaction.as_ref().map(|s| s.resolve("firstaction"));
        o.lastaction = self.lastaction.as_ref().map(|s| s.resolve("lastaction"));
        o.preremove = self.preremove.as_ref().map(|s| s.resolve("preremove"));
        for (key, s) in [
            ("prerotate", &self.prerotate),
            ("postrotate", &self.postrotate),
            ("firstaction", &self.firstaction),
            ("lastaction", &self.lastaction),
            ("preremove", &self.preremove),
        ] {
            if let Some(RawScript::Argv(v)) = s
                && v.is_empty()
            {
                return Err(format!("`{key}` is an empty list: name the program to run"));
            }
        }
        Ok(o)
    }
}

/// The inline table's log set, its patterns expanded now. A pattern that
/// matches nothing is reported, unless `missingok`.
pub fn inline_set(
    patterns: &[String],
    opts: &Options,
    state_file: &str,
    errors: &mut Vec<String>,
) -> LogSet {
    let mut files = Vec::new();
    for pattern in patterns {
        let mut matched = false;
        let found = crate::conf::expand(pattern).unwrap_or_else(|e| {
            errors.push(format!("pattern `{pattern}`: {e}"));
            Vec::new()
        });
        for p in found {
            if p == *pattern && std::fs::symlink_metadata(&p).is_err() {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let name = p.rsplit('/').next().unwrap_or_default();
            if meta.is_dir()
                || p == state_file
                || p.starts_with(&format!("{state_file}."))
                || name.starts_with(STATE_PREFIX)
                || (opts.skip_rotated_names && looks_rotated(&p, opts))
            {
                continue;
            }
            matched = true;
            if !files.contains(&p) {
                files.push(p);
            }
        }
        if !matched && !opts.missingok {
            errors.push(format!(
                "no log matches `{pattern}` (set missingok = true if that is expected)"
            ));
        }
    }
    LogSet {
        pattern: patterns.join(" "),
        files,
        opts: opts.clone(),
        origin: "[job.config]".to_owned(),
    }
}

/// `app.log.3`, `app.log.3.gz`, `app.log-20261128.gz`, `app.log.tmp` and
/// `*.backup` are products of rotation, never logs to rotate themselves.
pub fn looks_rotated(path: &str, opts: &Options) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = opts.compress_ext();
    let name = name.strip_suffix(ext.as_str()).unwrap_or(name);
    let name = name.strip_suffix(".gz").unwrap_or(name);
    if name.ends_with(".tmp") || name.ends_with(".backup") {
        return true;
    }
    let numbered = match name.rsplit_once('.') {
        Some((_, n)) => !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    };
    let dated = match name.rsplit_once('-') {
        Some((_, n)) => n.len() >= 8 && n.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    };
    numbered || dated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(json: &str) -> Result<Job, String> {
        parse_job(json, "rotate")
    }

    #[test]
    fn inline_defaults_keep_four_and_rotate_every_run() {
        let j = job(r#"{"paths":["/logs/app/*.log"]}"#).unwrap();
        assert_eq!(j.state_file, "/logs/app/.opsd-logrotate.rotate.status");
        assert_eq!(
            j.shared_state_file.as_deref(),
            Some("/logs/app/.opsd-logrotate.status")
        );
        let Source::Inline { opts, .. } = j.source else {
            panic!()
        };
        assert_eq!(opts.rotate, 4);
        assert_eq!(opts.criterion, Criterion::EveryRun);
    }

    #[test]
    fn logrotate_conf_needs_a_state_file_and_no_directives() {
        assert!(
            job(r#"{"logrotate_conf":"/etc/logrotate.conf"}"#)
                .unwrap_err()
                .contains("state_file")
        );
        assert!(
            job(r#"{"logrotate_conf":"/etc/logrotate.conf","state_file":"/s/x","compress":true}"#)
                .unwrap_err()
                .contains("belong in the logrotate config file")
        );
        let j = job(r#"{"logrotate_conf":["/etc/logrotate.conf"],"state_file":"/s/x"}"#).unwrap();
        assert!(matches!(j.source, Source::Conf(ref v) if v.len() == 1));
    }

    #[test]
    fn unknown_keys_and_conflicts_are_refused() {
        assert!(
            job(r#"{"paths":["/l/*"],"rotat":3}"#)
                .unwrap_err()
                .contains("rotat")
        );
        assert!(job(r#"{"paths":["/l/*"],"size":"1M","frequency":"daily"}"#).is_err());
        assert!(
            job(r#"{"paths":["l/*"]}"#)
                .unwrap_err()
                .contains("relative")
        );
        assert!(
            job(r#"{"paths":["/l/*"],"create":{"mode":"rw"}}"#)
                .unwrap_err()
                .contains("octal")
        );
    }

    #[test]
    fn rotated_names_are_not_logs() {
        let o = Options::default();
        assert!(looks_rotated("/l/app.log.1", &o));
        assert!(looks_rotated("/l/app.log.12.gz", &o));
        assert!(looks_rotated("/l/app.log-20261128.gz", &o));
        assert!(!looks_rotated("/l/app.log", &o));
        assert!(!looks_rotated("/l/app.v2.log", &o));
    }
}
