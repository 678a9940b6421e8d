//! `opsd import crontab`: crontab(5) files in, an opsd config out, one
//! `command` job per line.
//!
//! What cron does is kept exactly where opsd can say it, and said as a
//! comment where it cannot:
//! - the schedule: Vixie cron's fields (names, ranges, steps, 7 = Sunday,
//!   `@daily`...), run in the zone cron ran it in (`CRON_TZ`, else the
//!   machine's). Cron ANDs day-of-month and day-of-week when either field
//!   *starts* with `*` (so `*/2` counts as unrestricted) and ORs them
//!   otherwise; opsd (like croniter) calls only a field written `*`
//!   unrestricted. Each line's day fields are rewritten so opsd fires on
//!   cron's days; a line whose days opsd cannot name (`*/2` days that are
//!   also Mondays) is left out, commented, and said why.
//! - the command: cron hands every line to `SHELL -c`; a line with no
//!   shell syntax runs its program directly (no shell granted), a line
//!   with any (pipes, redirections, `&&`, `$VAR`, quotes...) runs as
//!   `sh -c "..."` with a REVIEW comment. `%` is a newline and what
//!   follows the first one is the program's standard input, `\%` a `%`.
//! - the grants are inferred conservatively: the programs the line names
//!   (resolved on cron's PATH), read-only access to the absolute paths it
//!   names, write access only where it redirects output; every job is
//!   marked for review.

mod schedule;
mod words;

use crate::grants::process::resolve_program;
use schedule::schedule;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use words::{
    assignment, bare_or_quoted, one_line, paths_of, percent, quoted, simple_words, split_word,
    tidy_fs,
};

/// One crontab to import.
#[derive(Debug, Clone)]
pub struct Source {
    /// For comments: where the lines came from.
    pub name: String,
    pub text: String,
    /// `/etc/crontab` and `/etc/cron.d/*`: a user field after the
    /// schedule.
    pub system: bool,
    /// Whose crontab it is, for a user crontab.
    pub user: Option<String>,
}

/// What the import needs to know about the machine.
#[derive(Debug, Clone)]
pub struct Machine {
    /// The zone cron reckons in without `CRON_TZ`.
    pub zone: String,
}

impl Machine {
    /// This machine: its zone from `TZ`, `/etc/timezone` or the
    /// `/etc/localtime` link (cron runs in local time).
    pub fn here() -> Machine {
        let from_tz = std::env::var("TZ")
            .ok()
            .map(|z| z.trim_start_matches(':').to_owned());
        let from_file = || {
            std::fs::read_to_string("/etc/timezone")
                .ok()
                .map(|z| z.trim().to_owned())
        };
        let from_link = || {
            std::fs::read_link("/etc/localtime").ok().and_then(|p| {
                let s = p.to_string_lossy().into_owned();
                s.split_once("zoneinfo/").map(|(_, z)| z.to_owned())
            })
        };
        let zone = [from_tz, from_file(), from_link()]
            .into_iter()
            .flatten()
            .find(|z| z.parse::<chrono_tz::Tz>().is_ok())
            .unwrap_or_else(|| "UTC".into());
        Machine { zone }
    }
}

/// cron's PATH when the crontab sets none.
const CRON_PATH: &str = "/usr/bin:/bin";

/// Words `sh` runs itself: never granted as programs.
const SH_BUILTINS: &[&str] = &[
    "cd", "test", "[", "echo", "printf", "true", "false", ":", "exit", "export", "set", "unset",
    "read", "exec", "eval", ".", "if", "then", "else", "elif", "fi", "for", "while", "until", "do",
    "done", "case", "esac", "in", "!", "{", "}", "umask", "wait", "trap", "shift", "return",
    "local", "kill", "command", "type", "ulimit",
];

/// Words only a shell can run (no program of that name does the same).
const SH_ONLY: &[&str] = &[
    "cd", "export", "set", "unset", "read", "exec", "eval", ".", "if", "for", "while", "until",
    "case", "!", "{", "umask", "wait", "trap", "shift", "return", "local", "ulimit", "command",
    "type", ":", "exit",
];

/// The whole import: an opsd config, as TOML text with comments.
pub fn import(sources: &[Source], machine: &Machine) -> String {
    let mut out = String::new();
    out.push_str(
        "# Imported by `opsd import crontab`. Review every job marked REVIEW, then\n\
         # `opsd check` this file. What differs from cron, for every job:\n\
         # - output is recorded with the run (`opsd logs RUN`), not mailed; failures\n\
         #   go to [[notify]] webhooks;\n\
         # - a run is stopped after the job's `timeout` (1h unless set), and a second\n\
         #   run does not start while one is going (overlap = \"forbid\");\n\
         # - programs see only the files, programs and variables granted below.\n",
    );
    let mut names = BTreeSet::new();
    for src in sources {
        Importer {
            src,
            names: &mut names,
            out: &mut out,
            env: Vec::new(),
            zone: machine.zone.clone(),
            shell: "sh".into(),
            path: CRON_PATH.into(),
            mailto: None,
        }
        .run();
    }
    out
}

struct Importer<'a> {
    src: &'a Source,
    names: &'a mut BTreeSet<String>,
    out: &'a mut String,
    /// Variables the crontab set, for the jobs after them.
    env: Vec<(String, String)>,
    zone: String,
    shell: String,
    path: String,
    mailto: Option<String>,
}

/// One job, before it is written.
struct Job {
    schedule: String,
    program: String,
    args: Vec<String>,
    stdin: Option<String>,
    exec: Vec<String>,
    fs: Vec<(String, bool)>,
    env: Vec<(String, String)>,
    review: Vec<String>,
    /// Files it reads outside any directory it names: `system_paths`.
    read_files: Vec<String>,
    /// Paths the line names that are not granted (too broad, or absent).
    left_out: Vec<String>,
}

impl Importer<'_> {
    fn run(mut self) {
        let _ = writeln!(self.out, "\n# ---- {} ----", one_line(&self.src.name));
        for (i, raw) in self.src.text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{}:{}", one_line(&self.src.name), i + 1);
            if let Some((name, value)) = assignment(line) {
                self.assign(&at, name, value);
                continue;
            }
            match self.job(line) {
                Ok(job) => self.write(&at, line, job),
                Err(why) => {
                    let _ = writeln!(
                        self.out,
                        "\n# NOT IMPORTED {at}: {}\n#   {}",
                        one_line(line),
                        one_line(&why)
                    );
                }
            }
        }
    }

    fn assign(&mut self, at: &str, name: &str, value: String) {
        if name.starts_with("LD_") {
            let _ = writeln!(
                self.out,
                "# NOTE {at}: {name} is not passed: it would load code into the jobs' programs"
            );
            return;
        }
        match name {
            "CRON_TZ" => {
                if value.parse::<chrono_tz::Tz>().is_ok() {
                    self.zone = value;
                } else {
                    let _ = writeln!(
                        self.out,
                        "# NOTE {at}: CRON_TZ={} is not an IANA zone; the jobs below keep {}",
                        one_line(&value),
                        self.zone
                    );
                }
            }
            "MAILTO" => {
                let _ = writeln!(
                    self.out,
                    "# NOTE {at}: MAILTO={}: opsd mails nothing; add a [[notify]] webhook to hear of failures",
                    one_line(&value)
                );
                self.mailto = Some(value);
            }
            "SHELL" => self.shell = value,
            "PATH" => {
                self.path = value.clone();
                self.env.retain(|(n, _)| n != "PATH");
                self.env.push((name.into(), value));
            }
            _ => {
                self.env.retain(|(n, _)| n != name);
                self.env.push((name.into(), value));
            }
        }
    }

    fn job(&mut self, line: &str) -> Result<Job, String> {
        let (schedule, rest) = schedule(line)?;
        let (user, command) = if self.src.system {
            let (user, cmd) = split_word(rest);
            if user.is_empty() || cmd.trim().is_empty() {
                return Err("a system crontab line has a user field and then a command".into());
            }
            (Some(user.to_owned()), cmd)
        } else {
            (self.src.user.clone(), rest)
        };
        let (command, stdin) = percent(command.trim());
        if command.trim().is_empty() {
            return Err("the line has a schedule but no command".into());
        }
        let mut job = Job {
            schedule: schedule.text,
            program: String::new(),
            args: Vec::new(),
            stdin,
            exec: Vec::new(),
            fs: Vec::new(),
            env: Vec::new(),
            review: schedule.review,
            read_files: Vec::new(),
            left_out: Vec::new(),
        };
        if let Some(u) = &user {
            job.review.push(format!(
                "cron ran this as `{u}`, in its home directory; opsd runs it as the daemon's user \
                 unless [job.grants] says user = \"{u}\" (opsd as root), in an empty directory unless \
                 the config sets cwd"
            ));
        }
        if let Some(m) = &self.mailto {
            job.review.push(format!(
                "cron mailed its output to {m}; opsd records it with the run"
            ));
        }
        match simple_words(&command) {
            Some(words) => {
                let program = self.program(&words[0], &mut job)?;
                job.program = program.clone();
                job.exec.push(program);
                job.args = words[1..].to_vec();
                for a in job.args.clone() {
                    paths_of(&a, false, &mut job);
                }
            }
            None => {
                let shell = if self.shell == "/bin/sh" {
                    "sh"
                } else {
                    self.shell.as_str()
                };
                let sh = self.program(shell, &mut job)?;
                job.program = sh.clone();
                job.exec.push(sh);
                job.args = vec!["-c".into(), command.clone()];
                job.review.push(
                    "uses shell syntax, so it runs through sh -c (as cron did); sh may start only the \
                     programs granted in exec, and a variable or path it builds at run time is not \
                     granted: check the list"
                        .into(),
                );
                self.shell_grants(&command, &mut job);
            }
        }
        if !job.left_out.is_empty() {
            job.review.push(format!(
                "it names {}, which is not granted (absent here, or a write directly into a top-level directory): grant the narrowest directory it needs",
                job.left_out
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let granted: Vec<(String, String)> = self.env.clone();
        if !granted.is_empty() {
            job.env = granted;
        }
        job.exec.dedup();
        Ok(job)
    }

    /// A program as cron finds it: an absolute path, or a name on the
    /// crontab's PATH.
    fn program(&self, word: &str, job: &mut Job) -> Result<String, String> {
        if word.contains('/') {
            if !word.starts_with('/') {
                return Err(format!(
                    "`{word}` is relative to the user's home directory, which opsd does not run in; write its absolute path"
                ));
            }
            return resolve_program(word, Path::new("/"))
                .map(|p| p.to_string_lossy().into_owned())
                .map_err(|e| format!("{e}; install it, or fix the path"));
        }
        for dir in self.path.split(':').filter(|d| d.starts_with('/')) {
            let p = Path::new(dir).join(word);
            if let Ok(found) = resolve_program(&p.to_string_lossy(), Path::new("/")) {
                return Ok(found.to_string_lossy().into_owned());
            }
        }
        // cron would not find it either; opsd's own PATH may.
        match resolve_program(word, Path::new("/")) {
            Ok(p) => {
                job.review.push(format!(
                    "`{word}` is not on cron's PATH ({}), so cron could not have run it; opsd found {}",
                    self.path,
                    p.display()
                ));
                Ok(p.to_string_lossy().into_owned())
            }
            Err(_) => Err(format!(
                "`{word}` is not installed here (not on {}); install it, or import the line on the machine that runs it",
                self.path
            )),
        }
    }

    /// The programs and paths a shell line names, as far as reading it
    /// without running it can tell.
    fn shell_grants(&self, command: &str, job: &mut Job) {
        let mut unknown = Vec::new();
        let mut redirect_next = false;
        for segment in command.split(['|', '&', ';', '\n', '(', ')', '`']) {
            let mut first = true;
            for word in segment.split_whitespace() {
                let word = word.trim_matches(|c| c == '"' || c == '\'');
                if let Some(target) = word
                    .strip_prefix(">>")
                    .or_else(|| word.strip_prefix('>'))
                    .or_else(|| word.strip_prefix("2>"))
                    .or_else(|| word.strip_prefix("1>"))
                {
                    if target.is_empty() {
                        redirect_next = true;
                    } else {
                        paths_of(target, true, job);
                    }
                    continue;
                }
                if redirect_next {
                    paths_of(word, true, job);
                    redirect_next = false;
                    continue;
                }
                if word.starts_with('<') {
                    paths_of(word.trim_start_matches('<'), false, job);
                    continue;
                }
                if first && assignment(word).is_some() {
                    continue;
                }
                if first {
                    first = false;
                    if SH_BUILTINS.contains(&word) || word.is_empty() {
                        continue;
                    }
                    if word.contains('$') || word.contains('*') {
                        unknown.push(word.to_owned());
                        continue;
                    }
                    let mut scratch = Job {
                        review: Vec::new(),
                        ..empty_job()
                    };
                    match self.program(word, &mut scratch) {
                        Ok(p) => {
                            job.exec.push(p);
                            job.review.append(&mut scratch.review);
                        }
                        Err(_) => unknown.push(word.to_owned()),
                    }
                    continue;
                }
                paths_of(word, false, job);
            }
        }
        if !unknown.is_empty() {
            job.review.push(format!(
                "it runs {}, which could not be found or worked out here; grant what it needs",
                unknown
                    .iter()
                    .map(|w| format!("`{w}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }

    fn write(&mut self, at: &str, line: &str, mut job: Job) {
        let base = job_name(&job, self.src);
        let mut name = base.clone();
        let mut n = 2;
        while !self.names.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        let out = &mut *self.out;
        let _ = writeln!(out, "\n# {at}: {}", one_line(line));
        for r in &job.review {
            let _ = writeln!(out, "# REVIEW: {}", one_line(r));
        }
        let _ = writeln!(out, "[[job]]");
        let _ = writeln!(out, "name = {}", quoted(&name));
        let _ = writeln!(out, "plugin = \"command\"");
        let _ = writeln!(out, "schedule = {}", quoted(&job.schedule));
        let _ = writeln!(out, "timezone = {}", quoted(&self.zone));
        let _ = writeln!(
            out,
            "catch_up = \"skip\"            # as cron: a slot missed while opsd was down is not run"
        );
        let _ = writeln!(out, "\n[job.grants]");
        let exec: Vec<String> = job.exec.iter().map(|e| quoted(e)).collect();
        let _ = writeln!(out, "exec = [{}]", exec.join(", "));
        tidy_fs(&mut job.fs, &job.exec);
        if !job.fs.is_empty() {
            let _ = writeln!(
                out,
                "fs = [   # REVIEW: inferred from the paths the line names"
            );
            for (path, write) in &job.fs {
                let _ = writeln!(
                    out,
                    "  {{ host = {p}, guest = {p}, access = \"{}\" }},",
                    if *write { "rw" } else { "ro" },
                    p = quoted(path)
                );
            }
            let _ = writeln!(out, "]");
        }
        job.read_files.sort();
        job.read_files.dedup();
        job.read_files
            .retain(|f| !job.fs.iter().any(|(d, _)| Path::new(f).starts_with(d)));
        if !job.read_files.is_empty() {
            let files: Vec<String> = job.read_files.iter().map(|f| quoted(f)).collect();
            let _ = writeln!(
                out,
                "system_paths = [{}]   # REVIEW: files it reads, read-only",
                files.join(", ")
            );
        }
        if !job.env.is_empty() {
            let names: Vec<String> = job.env.iter().map(|(n, _)| quoted(n)).collect();
            let _ = writeln!(out, "env = [{}]", names.join(", "));
        }
        let _ = writeln!(out, "\n[job.config]");
        let _ = writeln!(out, "program = {}", quoted(&job.program));
        if !job.args.is_empty() {
            let args: Vec<String> = job.args.iter().map(|a| quoted(a)).collect();
            let _ = writeln!(out, "args = [{}]", args.join(", "));
        }
        if let Some(stdin) = &job.stdin {
            let _ = writeln!(out, "stdin = {}", quoted(stdin));
        }
        if !job.env.is_empty() {
            let vars: Vec<String> = job
                .env
                .iter()
                .map(|(n, v)| format!("{} = {}", bare_or_quoted(n), quoted(v)))
                .collect();
            let _ = writeln!(out, "env = {{ {} }}", vars.join(", "));
        }
    }
}

fn empty_job() -> Job {
    Job {
        schedule: String::new(),
        program: String::new(),
        args: Vec::new(),
        stdin: None,
        exec: Vec::new(),
        fs: Vec::new(),
        env: Vec::new(),
        review: Vec::new(),
        read_files: Vec::new(),
        left_out: Vec::new(),
    }
}

/// A job name from the program's file name: `cron-backup-db`.
fn job_name(job: &Job, src: &Source) -> String {
    // Through sh: the first program the line runs besides the shell.
    let word = job.exec.get(1).unwrap_or(&job.program).clone();
    let base = Path::new(&word)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or(word);
    let file = Path::new(&src.name)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let raw = format!("cron-{file}-{base}");
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    name.trim_end_matches('-').chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str, system: bool) -> String {
        import(
            &[Source {
                name: "crontab".into(),
                text: text.into(),
                system,
                user: Some("app".into()),
            }],
            &Machine {
                zone: "Europe/Berlin".into(),
            },
        )
    }

    #[test]
    fn percent_is_newline_and_stdin_as_in_cron() {
        assert_eq!(percent("date"), ("date".into(), None));
        assert_eq!(
            percent(r"date +\%Y-\%m%line 1%line 2"),
            ("date +%Y-%m".into(), Some("line 1\nline 2".into()))
        );
        assert_eq!(
            percent(r"mail x%a\%b"),
            ("mail x".into(), Some("a%b".into()))
        );
        assert_eq!(quoted("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        let t: toml::Table = toml::from_str(&format!("v = {}", quoted("x\u{1}\ty\n"))).unwrap();
        assert_eq!(t["v"].as_str(), Some("x\u{1}\ty\n"));
    }

    #[test]
    fn lines_become_command_jobs() {
        let out = one(
            "MAILTO=ops@example.com\nCRON_TZ=America/New_York\n\
             */15 * * * * /bin/true --flag\n\
             @daily cat /etc/hostname | wc -c > /tmp/x\n\
             0 5 * * 1 sh -c 'echo hi'%input\n\
             0 0 */2 * mon /bin/true\n",
            false,
        );
        assert!(out.contains("schedule = \"*/15 * * * *\""), "{out}");
        assert!(out.contains("timezone = \"America/New_York\""), "{out}");
        assert!(
            out.contains("program = \"/bin/true\"") || out.contains("program = \"/usr/bin/true\""),
            "{out}"
        );
        assert!(out.contains("args = [\"--flag\"]"), "{out}");
        assert!(out.contains("MAILTO=ops@example.com"), "{out}");
        assert!(
            out.contains("args = [\"-c\", \"cat /etc/hostname | wc -c > /tmp/x\"]"),
            "{out}"
        );
        assert!(out.contains("REVIEW: uses shell syntax"), "{out}");
        assert!(out.contains("stdin = \"input\""), "{out}");
        assert!(out.contains("NOT IMPORTED crontab:6"), "{out}");
        let parsed: Result<toml::Table, _> = toml::from_str(&out);
        assert!(parsed.is_ok(), "{out}\n{parsed:?}");
    }

    #[test]
    fn nothing_in_a_crontab_writes_toml_of_its_own() {
        let hostile = "MAILTO=a\u{b}b\nLD_PRELOAD=/tmp/x.so\n\
                       * * * * * /bin/true \u{c}\n\
                       * * * * * /bin/true\u{7f}x\n";
        let out = import(
            &[Source {
                name: "tab\n[[job]]\nname = \"injected\"".into(),
                text: hostile.into(),
                system: false,
                user: None,
            }],
            &Machine { zone: "UTC".into() },
        );
        let parsed: toml::Table = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        let jobs = parsed["job"].as_array().unwrap();
        assert!(
            jobs.iter().all(|j| j["name"].as_str() != Some("injected")),
            "{out}"
        );
        assert!(!out.contains("env = "), "LD_PRELOAD is never passed: {out}");
    }

    #[test]
    fn grants_are_the_narrowest_directories_the_line_names() {
        // Not under /tmp (where a checkout may live): the import never
        // grants /tmp, a program's private scratch.
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let d = dir.path().canonicalize().unwrap();
        std::fs::create_dir(d.join("reports")).unwrap();
        std::fs::create_dir(d.join("data")).unwrap();
        std::fs::write(d.join("data/in.csv"), "x").unwrap();
        let line = format!(
            "0 3 * * * wc -l {d}/data/in.csv /etc/hostname /nonexistent-dir > {d}/reports/out.txt\n",
            d = d.display()
        );
        let out = one(&line, false);
        let d = d.display();
        assert!(
            out.contains(&format!(
                "system_paths = [\"/etc/hostname\", \"{d}/data/in.csv\"]"
            )),
            "{out}"
        );
        assert!(!out.contains(&format!("host = \"{d}/data\"")), "{out}");
        assert!(
            out.contains(&format!(
                "{{ host = \"{d}/reports\", guest = \"{d}/reports\", access = \"rw\" }}"
            )),
            "{out}"
        );
        assert!(!out.contains("host = \"/etc\""), "{out}");
        assert!(
            out.contains("it names `/nonexistent-dir`, which is not granted"),
            "{out}"
        );
    }

    #[test]
    fn system_lines_have_a_user() {
        let out = one("17 * * * * root cd / && run-parts --report /etc\n", true);
        assert!(out.contains("cron ran this as `root`"), "{out}");
        assert!(out.contains("run-parts"), "{out}");
        let out = one("17 * * * * root\n", true);
        assert!(out.contains("NOT IMPORTED"), "{out}");
    }
}
