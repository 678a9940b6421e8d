//! Reads logrotate configuration files as they are: global directives,
//! `path { ... }` stanzas, scripts, `include` of files and directories,
//! `tabooext`/`taboopat`. Parsing follows logrotate 3.21's own reader
//! (a character-level state machine) so the same file means the same
//! thing; messages name the file and line.

use crate::directives::{self, Criterion, Options, Script};
use crate::sys;

/// One stanza: the logs its patterns matched and how to rotate them.
#[derive(Debug, Clone)]
pub struct LogSet {
    /// The file list as written before `{`, passed to shared scripts.
    pub pattern: String,
    /// Matched paths; a pattern matching nothing stands for itself, as
    /// with glob's GLOB_NOCHECK, so a missing log is reported (or skipped
    /// under `missingok`) when it is rotated.
    pub files: Vec<String>,
    pub opts: Options,
    /// `file:line` of the stanza.
    pub origin: String,
}

/// The result of reading a set of config paths.
#[derive(Debug, Default)]
pub struct Parsed {
    pub sets: Vec<LogSet>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// logrotate's default `tabooext` list: files in an included directory
/// with these endings are package-manager leftovers, not configs.
const DEFAULT_TABOO: &[&str] = &[
    ",v",
    ".bak",
    ".cfsaved",
    ".disabled",
    ".dpkg-bak",
    ".dpkg-del",
    ".dpkg-dist",
    ".dpkg-new",
    ".dpkg-old",
    ".dpkg-tmp",
    ".rhn-cfg-tmp-*",
    ".rpmnew",
    ".rpmorig",
    ".rpmsave",
    ".swp",
    ".ucf-dist",
    ".ucf-new",
    ".ucf-old",
    "~",
];

const MAX_NESTING: u32 = 16;

/// Reads config paths (files or directories) in order, as
/// `logrotate PATH...` does. `root` turns on logrotate's checks for
/// configs that others could have written.
pub fn read_paths(paths: &[String], root: bool) -> Parsed {
    let mut reader = Reader {
        root,
        parsed: Parsed::default(),
        taboo: DEFAULT_TABOO.iter().map(|t| format!("*{t}")).collect(),
        depth: 0,
    };
    let mut defaults = Options::default();
    for p in paths {
        reader.read_path(p, &mut defaults);
    }
    reader.parsed
}

struct Reader {
    root: bool,
    parsed: Parsed,
    taboo: Vec<String>,
    depth: u32,
}

/// Parser states, as in logrotate's reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Default,
    SkipLine,
    /// Inside a script; `skip` when the stanza is being thrown away.
    Script {
        skip: bool,
        skip_line: bool,
    },
    DefinitionEnd,
    /// Throwing away the rest of a broken stanza, up to `}`.
    SkipStanza {
        skip_line: bool,
    },
}

/// Which script a `prerotate`/... keyword fills.
#[derive(Debug, Clone, Copy)]
enum ScriptKind {
    Pre,
    Post,
    First,
    Last,
    PreRemove,
}

impl Reader {
    fn error(&mut self, msg: String) {
        self.parsed.errors.push(msg);
    }

    fn read_path(&mut self, path: &str, defaults: &mut Options) -> bool {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.error(format!("cannot stat {path}: {e}"));
                return false;
            }
        };
        if meta.is_dir() {
            let entries = match std::fs::read_dir(path) {
                Ok(rd) => rd,
                Err(e) => {
                    self.error(format!("cannot open directory {path}: {e}"));
                    return false;
                }
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| self.config_name_ok(n))
                .collect();
            names.sort();
            let mut ok = true;
            for name in names {
                let full = format!("{}/{name}", path.trim_end_matches('/'));
                let backup = defaults.clone();
                if !self.read_file(&full, defaults) {
                    self.error(format!("found error in file {full}, skipping"));
                    *defaults = backup;
                    ok = false;
                }
            }
            ok
        } else {
            let backup = defaults.clone();
            if !self.read_file(path, defaults) {
                *defaults = backup;
                return false;
            }
            true
        }
    }

    /// logrotate's `checkFile`: not `.`/`..`, not a taboo ending.
    fn config_name_ok(&self, name: &str) -> bool {
        if name == "." || name == ".." {
            return false;
        }
        let opts = glob::MatchOptions {
            require_literal_leading_dot: true,
            ..Default::default()
        };
        !self.taboo.iter().any(|t| {
            glob::Pattern::new(t)
                .map(|p| p.matches_with(name, opts))
                .unwrap_or(false)
        })
    }

    /// Reads one file; false when it had an error that logrotate treats as
    /// the file's failure.
    fn read_file(&mut self, path: &str, defaults: &mut Options) -> bool {
        let meta = match sys::stat(path) {
            Ok(m) => m,
            Err(e) => {
                self.error(format!("failed to open config file {path}: {e}"));
                return false;
            }
        };
        if !meta.is_file {
            return true;
        }
        if self.root {
            if meta.mode & 0o022 != 0 {
                self.error(format!(
                    "Ignoring {path} because it is writable by group or others (mode {:04o}): only root should be able to change what a root daemon does",
                    meta.mode
                ));
                return true;
            }
            if meta.uid != 0 {
                self.error(format!(
                    "Ignoring {path} because the file owner is wrong (should be root or user with uid 0)"
                ));
                return true;
            }
        }
        let text = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                self.error(format!("failed to open config file {path}: {e}"));
                return false;
            }
        };
        if text.is_empty() {
            return true;
        }
        if text.len() > 0xff_ffff {
            self.error(format!("file {path} too large, probably not a config file"));
            return false;
        }
        FileParser {
            reader: self,
            path,
            b: &text,
            pos: 0,
            line: 1,
            defaults,
            cur: None,
            glob_error: None,
            logerror: false,
        }
        .parse()
    }
}

struct FileParser<'r, 'a> {
    reader: &'r mut Reader,
    path: &'a str,
    b: &'a [u8],
    pos: usize,
    line: usize,
    defaults: &'a mut Options,
    /// The stanza being read (logrotate's `newlog != defConfig`).
    cur: Option<LogSet>,
    /// A glob failure in the current stanza's file list, reported at `}`
    /// unless the stanza turns out to say `missingok`.
    glob_error: Option<String>,
    logerror: bool,
}

/// Why parsing of a line stopped.
enum Fail {
    /// An error inside a stanza: the stanza is thrown away.
    Stanza,
    /// An error that ends the whole file.
    File,
}

fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

impl FileParser<'_, '_> {
    fn at(&self) -> String {
        format!("{}:{}", self.path, self.line)
    }

    fn err(&mut self, msg: impl std::fmt::Display) {
        let at = self.at();
        self.reader.error(format!("{at} {msg}"));
    }

    fn warn(&mut self, msg: impl std::fmt::Display) {
        let at = self.at();
        self.reader.parsed.warnings.push(format!("{at} {msg}"));
    }

    fn opts(&mut self) -> &mut Options {
        match &mut self.cur {
            Some(set) => &mut set.opts,
            None => self.defaults,
        }
    }

    fn raise(&self) -> Fail {
        if self.cur.is_some() {
            Fail::Stanza
        } else {
            Fail::File
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// Alphabetic word at `pos` after blanks; leaves `pos` after it.
    fn word(&mut self) -> String {
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.b[start..self.pos]).into_owned()
    }

    /// The rest of the line from `pos`, trailing whitespace trimmed;
    /// leaves `pos` on the last character before the newline.
    fn rest_of_line(&mut self) -> String {
        let start = self.pos;
        let mut end = start;
        while end < self.b.len() && self.b[end] != b'\n' {
            end += 1;
        }
        let text = String::from_utf8_lossy(&self.b[start..end])
            .trim_end()
            .to_owned();
        self.pos = end.saturating_sub(1).max(start.saturating_sub(1));
        text
    }

    /// A directive's value: blanks and an optional `=` skipped, the rest of
    /// the line. None (after an error message) when there is none.
    fn value(&mut self, key: &str) -> Option<String> {
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
        if self.peek() == Some(b'=') {
            self.pos += 1;
            while self.peek().is_some_and(is_blank) {
                self.pos += 1;
            }
        }
        if matches!(self.peek(), None | Some(b'\n')) {
            self.err(format!("argument expected after {key}"));
            if self.peek().is_some() {
                self.pos -= 1;
            }
            return None;
        }
        Some(self.rest_of_line())
    }

    /// A path value: printable, no blanks.
    fn path_value(&mut self, key: &str) -> Result<String, Fail> {
        let v = self.value(key).ok_or_else(|| self.raise())?;
        if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.err(format!("bad {key} path {v}"));
            return Err(self.raise());
        }
        Ok(v)
    }

    fn parse(mut self) -> bool {
        let mut st = St::Default;
        let mut script: Option<(ScriptKind, usize, usize)> = None;
        while self.pos < self.b.len() {
            let c = self.b[self.pos];
            match st {
                St::Default => {
                    if is_blank(c) {
                        self.pos += 1;
                        continue;
                    }
                    let step = if c == b'#' {
                        st = St::SkipLine;
                        Ok(())
                    } else if c.is_ascii_alphabetic() {
                        self.keyword(&mut st, &mut script)
                    } else if matches!(c, b'/' | b'"' | b'\'' | b'~') {
                        self.stanza_start(&mut st)
                    } else if c == b'}' {
                        self.stanza_end(&mut st)
                    } else if c != b'\n' {
                        self.err("lines must begin with a keyword or a filename (possibly in double quotes)");
                        Err(self.raise())
                    } else {
                        Ok(())
                    };
                    match step {
                        Ok(()) => {}
                        Err(Fail::Stanza) => {
                            let pattern = self
                                .cur
                                .as_ref()
                                .map(|s| s.pattern.trim().to_owned())
                                .unwrap_or_default();
                            self.reader
                                .error(format!("found error in {pattern}, skipping"));
                            self.logerror = true;
                            // Skip the rest of this line, then the stanza.
                            st = St::SkipStanza {
                                skip_line: self.peek() != Some(b'\n'),
                            };
                        }
                        Err(Fail::File) => return false,
                    }
                }
                St::SkipLine => {
                    if c == b'\n' {
                        st = St::Default;
                    }
                }
                St::Script { skip, skip_line } => {
                    if skip_line {
                        if c == b'\n' {
                            st = St::Script {
                                skip,
                                skip_line: false,
                            };
                        }
                    } else {
                        let word_start = self.pos;
                        let w = self.word();
                        if w == "endscript" {
                            if let Some((kind, start, line)) = script.take()
                                && !skip
                            {
                                // The body ends where the endscript line
                                // begins.
                                let mut end = word_start;
                                while end > start && self.b[end - 1] != b'\n' {
                                    end -= 1;
                                }
                                let body =
                                    String::from_utf8_lossy(&self.b[start..end]).into_owned();
                                let s = Script::Text {
                                    body,
                                    origin: format!("{}:{line}", self.path),
                                };
                                let o = self.opts();
                                *match kind {
                                    ScriptKind::Pre => &mut o.prerotate,
                                    ScriptKind::Post => &mut o.postrotate,
                                    ScriptKind::First => &mut o.firstaction,
                                    ScriptKind::Last => &mut o.lastaction,
                                    ScriptKind::PreRemove => &mut o.preremove,
                                } = Some(s);
                            }
                            script = None;
                            st = if skip {
                                St::SkipStanza { skip_line: false }
                            } else {
                                St::Default
                            };
                        } else {
                            st = St::Script {
                                skip,
                                skip_line: self.peek() != Some(b'\n'),
                            };
                        }
                        if self.pos >= self.b.len() {
                            break;
                        }
                    }
                }
                St::DefinitionEnd => {
                    if is_blank(c) {
                        self.pos += 1;
                        continue;
                    }
                    if c != b'\n' {
                        self.err("unexpected text after }");
                        st = St::SkipLine;
                    } else {
                        st = St::Default;
                    }
                }
                St::SkipStanza { skip_line } => {
                    if skip_line {
                        if c == b'\n' {
                            st = St::SkipStanza { skip_line: false };
                        }
                    } else if c == b'}' {
                        self.cur = None;
                        st = St::Default;
                    } else {
                        let w = self.word();
                        if matches!(
                            w.as_str(),
                            "postrotate" | "prerotate" | "firstaction" | "lastaction" | "preremove"
                        ) {
                            script = Some((ScriptKind::Pre, self.pos, self.line));
                            st = St::Script {
                                skip: true,
                                skip_line: false,
                            };
                        } else if self.peek().is_some_and(|c| c != b'\n') {
                            st = St::SkipStanza { skip_line: true };
                        }
                        if self.pos >= self.b.len() {
                            break;
                        }
                    }
                }
            }
            if self.b.get(self.pos) == Some(&b'\n') {
                self.line += 1;
            }
            self.pos += 1;
        }
        if script.is_some() {
            self.reader.error(format!(
                "{}: prerotate, postrotate or preremove without endscript",
                self.path
            ));
            return false;
        }
        if let Some(set) = self.cur.take() {
            self.reader.error(format!(
                "{}: missing '}}' for the log definition at {}; it is skipped",
                self.path, set.origin
            ));
            return false;
        }
        !self.logerror
    }

    /// A directive; `pos` is on its first letter.
    fn keyword(
        &mut self,
        st: &mut St,
        script: &mut Option<(ScriptKind, usize, usize)>,
    ) -> Result<(), Fail> {
        let key = self.word();
        if let Some(c) = self.peek()
            && !c.is_ascii_whitespace()
            && c != b'='
        {
            self.err(format!(
                "keyword '{key}' not properly separated, found {:#x}",
                c
            ));
            return Err(self.raise());
        }
        let in_stanza = self.cur.is_some();
        match key.as_str() {
            "compress" => self.opts().compress = true,
            "nocompress" => self.opts().compress = false,
            "delaycompress" => self.opts().delaycompress = true,
            "nodelaycompress" => self.opts().delaycompress = false,
            "shred" => self.warn(
                "shred is not supported: old logs are removed without overwriting (use an encrypted or discarding file system)",
            ),
            "noshred" => {}
            "shredcycles" => {
                self.value("shred cycles");
            }
            "allowhardlink" => self.opts().allowhardlink = true,
            "noallowhardlink" => self.opts().allowhardlink = false,
            "sharedscripts" => self.opts().sharedscripts = true,
            "nosharedscripts" => self.opts().sharedscripts = false,
            "copytruncate" => {
                let o = self.opts();
                o.copytruncate = true;
                o.renamecopy = false;
            }
            "nocopytruncate" => self.opts().copytruncate = false,
            "renamecopy" => {
                let o = self.opts();
                o.renamecopy = true;
                o.copytruncate = false;
            }
            "norenamecopy" => self.opts().renamecopy = false,
            "copy" => self.opts().copy = true,
            "nocopy" => self.opts().copy = false,
            "ifempty" => self.opts().ifempty = true,
            "notifempty" => self.opts().ifempty = false,
            "dateext" => self.opts().dateext = true,
            "nodateext" => self.opts().dateext = false,
            "dateyesterday" => self.opts().dateyesterday = true,
            "datehourago" => self.opts().datehourago = true,
            "dateformat" => {
                let v = self.value(&key);
                self.opts().dateformat = v;
            }
            "noolddir" => self.opts().olddir = None,
            "mailfirst" | "maillast" | "nomail" => {}
            "mail" => {
                if let Some(addr) = self.value(&key) {
                    self.warn(format!(
                        "mail {addr}: mailing logs is not supported; old logs are removed as if `nomail` were set"
                    ));
                }
            }
            "su" => {
                let line = self.rest_of_line();
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.len() {
                    2 => self.opts().su = true,
                    0 => {
                        self.err("no user for su");
                        return Err(self.raise());
                    }
                    1 => {
                        self.err("no group for su");
                        return Err(self.raise());
                    }
                    _ => {
                        self.err("extra arguments for su");
                        return Err(self.raise());
                    }
                }
            }
            "create" | "createolddir" => {
                let line = self.rest_of_line();
                match directives::parse_mode_owner(&line) {
                    Ok(mo) => {
                        let o = self.opts();
                        if key == "create" {
                            o.create = Some(mo);
                        } else {
                            o.createolddir = Some(mo);
                        }
                    }
                    Err(e) => {
                        self.err(format!("{key}: {e}"));
                        return Err(self.raise());
                    }
                }
            }
            "nocreate" => self.opts().create = None,
            "nocreateolddir" => self.opts().createolddir = None,
            "size" | "minsize" | "maxsize" => {
                let Some(v) = self.value(&key) else {
                    return Ok(());
                };
                match directives::parse_size(&v) {
                    Ok(n) => {
                        let o = self.opts();
                        match key.as_str() {
                            "size" => o.criterion = Criterion::Size(n),
                            "minsize" => o.minsize = n,
                            _ => o.maxsize = n,
                        }
                    }
                    Err(e) => {
                        self.err(format!("bad size: {e}"));
                        return Err(self.raise());
                    }
                }
            }
            "hourly" => self.opts().criterion = Criterion::Hourly,
            "daily" => self.opts().criterion = Criterion::Daily,
            "monthly" => self.opts().criterion = Criterion::Monthly,
            "yearly" => self.opts().criterion = Criterion::Yearly,
            "weekly" => {
                let line = self.rest_of_line();
                let arg = line.trim();
                if arg.is_empty() {
                    self.opts().criterion = Criterion::Weekly(0);
                } else {
                    match arg.parse::<u32>() {
                        Ok(d) if d <= 7 => self.opts().criterion = Criterion::Weekly(d),
                        _ => {
                            self.err(format!(
                                "bad weekly directive '{arg}': write a weekday 0-6 (0 is Sunday) or 7"
                            ));
                            return Err(Fail::File);
                        }
                    }
                }
            }
            "rotate" | "start" | "minage" | "maxage" => {
                let what = match key.as_str() {
                    "rotate" => "rotate count",
                    "start" => "start count",
                    "minage" => "minage count",
                    _ => "maxage count",
                };
                let v = self.value(what).ok_or_else(|| self.raise())?;
                let parsed = if key == "rotate" {
                    match v.strip_prefix('-') {
                        Some(rest) => directives::parse_c_number(rest).map(|n| -(n as i64)),
                        None => directives::parse_c_number(&v).map(|n| n as i64),
                    }
                    .filter(|n| *n >= -1)
                } else {
                    directives::parse_c_number(&v).map(|n| n as i64)
                };
                let Some(n) = parsed else {
                    self.err(format!(
                        "bad {} '{v}'",
                        match key.as_str() {
                            "rotate" => "rotation count",
                            "start" => "start count",
                            "minage" => "minimum age",
                            _ => "maximum age",
                        }
                    ));
                    return Err(self.raise());
                };
                let o = self.opts();
                match key.as_str() {
                    "rotate" => o.rotate = n,
                    "start" => o.start = n as u64,
                    "minage" => o.minage = n as u64,
                    _ => o.maxage = n as u64,
                }
            }
            "errors" => self.warn("the errors directive is deprecated and no longer used"),
            "missingok" => self.opts().missingok = true,
            "nomissingok" => self.opts().missingok = false,
            "ignoreduplicates" => self.opts().ignoreduplicates = true,
            "prerotate" | "postrotate" | "firstaction" | "lastaction" | "preremove" => {
                let kind = match key.as_str() {
                    "prerotate" => ScriptKind::Pre,
                    "postrotate" => ScriptKind::Post,
                    "firstaction" => ScriptKind::First,
                    "lastaction" => ScriptKind::Last,
                    _ => ScriptKind::PreRemove,
                };
                *script = Some((kind, self.pos, self.line));
                *st = St::Script {
                    skip: false,
                    skip_line: false,
                };
                // `pos` is on the character after the keyword; the script
                // state reads from there.
                if self.peek() == Some(b'\n') {
                    return Ok(());
                }
                *st = St::Script {
                    skip: false,
                    skip_line: true,
                };
            }
            "tabooext" | "taboopat" => {
                if in_stanza {
                    self.err(format!("{key} may not appear inside of log file definition"));
                    return Err(Fail::Stanza);
                }
                let Some(v) = self.value(&key) else {
                    return Ok(());
                };
                let mut list = v.as_str();
                if let Some(rest) = list.strip_prefix('+') {
                    list = rest.trim_start();
                } else {
                    self.reader.taboo.clear();
                }
                for item in list
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .filter(|s| !s.is_empty())
                {
                    self.reader.taboo.push(if key == "tabooext" {
                        format!("*{item}")
                    } else {
                        item.to_owned()
                    });
                }
            }
            "include" => {
                if in_stanza {
                    self.err("include may not appear inside of log file definition");
                    return Err(Fail::Stanza);
                }
                let v = self.value(&key).ok_or(Fail::File)?;
                let target = if v.starts_with('/') {
                    v
                } else {
                    // Relative to the including file's directory.
                    let dir = match self.path.rfind('/') {
                        Some(0) => "/",
                        Some(i) => &self.path[..i],
                        None => ".",
                    };
                    format!("{}/{v}", dir.trim_end_matches('/'))
                };
                if self.reader.depth >= MAX_NESTING {
                    self.err("include nesting too deep");
                    self.logerror = true;
                    return Ok(());
                }
                self.reader.depth += 1;
                let ok = self.reader.read_path(&target, self.defaults);
                self.reader.depth -= 1;
                if !ok {
                    self.logerror = true;
                }
            }
            "olddir" => {
                let v = self.path_value("olddir")?;
                self.opts().olddir = Some(v);
            }
            "extension" => {
                let v = self.value("extension name").ok_or_else(|| self.raise())?;
                self.opts().extension = Some(v);
            }
            "addextension" => {
                let v = self
                    .value("addextension name")
                    .ok_or_else(|| self.raise())?;
                self.opts().addextension = Some(v);
            }
            "compresscmd" => {
                let v = self.path_value("compress")?;
                let base = v.rsplit('/').next().unwrap_or(&v).to_owned();
                let o = self.opts();
                if let Some(ext) = directives::ext_for_command(&base) {
                    o.compress_ext = Some(ext.to_owned());
                }
                o.compress_cmd = Some(v);
            }
            "uncompresscmd" => {
                self.path_value("uncompress")?;
            }
            "compressoptions" => {
                let line = self.rest_of_line();
                match split_argv(&line) {
                    Some(args) => self.opts().compress_options = args,
                    None => {
                        self.err("invalid compression options");
                        return Err(self.raise());
                    }
                }
            }
            "compressext" => {
                let v = self.path_value("compress-ext")?;
                self.opts().compress_ext = Some(v);
            }
            _ => {
                self.err(format!("unknown option '{key}' -- ignoring line"));
                if self.peek().is_some_and(|c| c != b'\n') {
                    *st = St::SkipLine;
                }
            }
        }
        Ok(())
    }

    /// A file list up to `{`; `pos` is on its first character.
    fn stanza_start(&mut self, _st: &mut St) -> Result<(), Fail> {
        if self.cur.is_some() {
            self.err("unexpected log filename");
            return Err(Fail::Stanza);
        }
        let origin = self.at();
        let start_line = self.line;
        // Collect up to `{`, dropping comments at line starts.
        let mut text = String::new();
        let mut at_line_start = false;
        let mut in_comment = false;
        loop {
            let Some(c) = self.peek() else {
                self.line = start_line;
                self.err("missing '{' after log files definition");
                return Err(Fail::File);
            };
            if at_line_start && !in_comment {
                if c == b'#' {
                    in_comment = true;
                } else if !c.is_ascii_whitespace() {
                    at_line_start = false;
                }
            }
            if c == b'\n' {
                at_line_start = true;
                in_comment = false;
                self.line += 1;
                text.push('\n');
                self.pos += 1;
                continue;
            }
            if in_comment {
                self.pos += 1;
                continue;
            }
            match c {
                b'}' => {
                    self.err("unexpected } (missing previous '{')");
                    return Err(Fail::File);
                }
                b'{' => break,
                _ => {}
            }
            let ch_len = utf8_len(c);
            let end = (self.pos + ch_len).min(self.b.len());
            text.push_str(&String::from_utf8_lossy(&self.b[self.pos..end]));
            self.pos = end;
        }
        let Some(args) = split_argv(&text) else {
            self.err("error parsing filename");
            return Err(Fail::File);
        };
        if args.is_empty() {
            self.err("{ expected after log file name(s)");
            return Err(Fail::File);
        }
        let mut opts = self.defaults.clone();
        // logrotate does not carry a global `addextension` into stanzas.
        opts.addextension = None;
        let mut set = LogSet {
            pattern: text,
            files: Vec::new(),
            opts,
            origin,
        };
        for arg in &args {
            match expand(arg) {
                Ok(paths) => {
                    for p in paths {
                        if sys::lstat(&p).is_ok_and(|m| m.is_dir) {
                            continue;
                        }
                        // The set that already has this log decides, as in
                        // logrotate.
                        let holder = self
                            .reader
                            .parsed
                            .sets
                            .iter()
                            .chain(std::iter::once(&set))
                            .find(|s| s.files.contains(&p));
                        if let Some(holder) = holder {
                            if holder.opts.ignoreduplicates {
                                continue;
                            }
                            self.err(format!("duplicate log entry for {p}"));
                            self.logerror = true;
                            continue;
                        }
                        set.files.push(p);
                    }
                }
                Err(e) => {
                    self.glob_error = Some(format!("{} glob failed for {arg}: {e}", self.at()));
                }
            }
        }
        self.cur = Some(set);
        // `pos` stays on `{`; the loop steps past it.
        Ok(())
    }

    /// `}`: checks olddir and keeps the stanza.
    fn stanza_end(&mut self, st: &mut St) -> Result<(), Fail> {
        let Some(set) = self.cur.take() else {
            self.err("unexpected }");
            return Err(Fail::File);
        };
        if let Some(glob_err) = self.glob_error.take()
            && !set.opts.missingok
        {
            self.reader.error(glob_err);
            return Err(Fail::File);
        }
        if let Some(olddir) = set.opts.olddir.clone() {
            for file in &set.files {
                let dir = dirname(file);
                if let Err(e) = sys::stat(&dir) {
                    if set.opts.missingok {
                        continue;
                    }
                    self.err(format!("error verifying log file path {dir}: {e}"));
                    return Err(Fail::File);
                }
                let target = if olddir.starts_with('/') {
                    olddir.clone()
                } else {
                    format!("{dir}/{olddir}")
                };
                match sys::stat(&target) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let Some(mo) = set.opts.createolddir.clone() else {
                            self.err(format!("error verifying olddir path {target}: {e}"));
                            return Err(Fail::File);
                        };
                        if let Err(e) = make_dirs(&target, &mo, self.reader.root) {
                            self.err(format!("cannot create olddir {target}: {e}"));
                            return Err(Fail::File);
                        }
                    }
                    Err(e) => {
                        self.err(format!("error verifying olddir path {target}: {e}"));
                        return Err(Fail::File);
                    }
                }
            }
        }
        self.reader.parsed.sets.push(set);
        *st = St::DefinitionEnd;
        Ok(())
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

/// The directory part of a path, as `dirname(3)`.
pub fn dirname(path: &str) -> String {
    let p = path.trim_end_matches('/');
    match p.rfind('/') {
        Some(0) => "/".to_owned(),
        Some(i) => p[..i].trim_end_matches('/').to_owned(),
        None => ".".to_owned(),
    }
}

/// `mkdir -p` with logrotate's `createolddir` mode and owner for the
/// directories it creates.
fn make_dirs(path: &str, mo: &directives::ModeOwner, root: bool) -> Result<(), String> {
    let mode = mo.mode.unwrap_or(0o755);
    // Start below the deepest directory that exists: in the sandbox the
    // parents of a grant cannot even be stat'ed.
    let mut existing = path.trim_end_matches('/').to_owned();
    while !existing.is_empty() && !std::path::Path::new(&existing).is_dir() {
        existing = match existing.rfind('/') {
            Some(i) => existing[..i].to_owned(),
            None => String::new(),
        };
    }
    let mut prefix = existing.clone();
    let rest = path.trim_end_matches('/')[existing.len()..].to_owned();
    for part in rest.split('/').filter(|p| !p.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        match std::fs::create_dir(&prefix) {
            Ok(()) => {
                if root && (mo.owner.is_some() || mo.group.is_some()) {
                    sys::set_owner(&prefix, mo.owner.as_deref(), mo.group.as_deref())?;
                }
                sys::set_mode(&prefix, mode)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if !std::path::Path::new(&prefix).is_dir() {
                    return Err(format!(
                        "path {prefix} already exists, but it is not a directory"
                    ));
                }
            }
            Err(e) => return Err(format!("error creating {prefix}: {e}")),
        }
    }
    Ok(())
}

/// Expands one pattern like glob(3) with GLOB_NOCHECK: sorted matches, or
/// the pattern itself when nothing matches. Unreadable directories are an
/// error; missing ones are not.
pub fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let mut out = glob(pattern).map_err(|e| e.to_string())?;
    if out.is_empty() {
        out.push(pattern.to_owned());
    }
    Ok(out)
}

/// glob(3) without flags: `*`, `?` and `[...]` per path component, a
/// leading dot matched only literally, results sorted.
///
/// Directories are read only where a component has wildcards: inside the
/// sandbox the parents of a grant (`/var` above `/var/log`) cannot be
/// listed or even stat'ed, so the literal prefix is taken as given.
pub fn glob(pattern: &str) -> std::io::Result<Vec<String>> {
    let is_wild = |c: &str| c.contains(['*', '?', '[']);
    let absolute = pattern.starts_with('/');
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    let Some(first_wild) = parts.iter().position(|p| is_wild(p)) else {
        return Ok(if sys::lstat(pattern).is_ok() {
            vec![pattern.to_owned()]
        } else {
            Vec::new()
        });
    };
    let join = |base: &str, name: &str| {
        if base.is_empty() {
            if absolute {
                format!("/{name}")
            } else {
                name.to_owned()
            }
        } else if base == "/" {
            format!("/{name}")
        } else {
            format!("{base}/{name}")
        }
    };
    let mut base = if absolute {
        "/".to_owned()
    } else {
        String::new()
    };
    for part in &parts[..first_wild] {
        base = join(&base, part);
    }
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let mut current = vec![base];
    for (i, part) in parts.iter().enumerate().skip(first_wild) {
        let last = i == parts.len() - 1;
        let mut next = Vec::new();
        if !is_wild(part) {
            for dir in &current {
                next.push(join(dir, part));
            }
        } else {
            let Ok(pat) = glob::Pattern::new(part) else {
                return Ok(Vec::new());
            };
            for dir in &current {
                let listing = if dir.is_empty() { "." } else { dir.as_str() };
                let entries = match std::fs::read_dir(listing) {
                    Ok(rd) => rd,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => {
                        return Err(std::io::Error::new(e.kind(), format!("{listing}: {e}")));
                    }
                };
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| pat.matches_with(n, opts))
                    .collect();
                names.sort();
                for n in names {
                    let path = join(dir, &n);
                    if last || std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                        next.push(path);
                    }
                }
            }
        }
        current = next;
    }
    current.retain(|p| sys::lstat(p).is_ok());
    current.sort();
    Ok(current)
}

/// Splits a line into words as popt's `poptParseArgvString` does:
/// whitespace separates, quotes group, a backslash escapes. None for an
/// unterminated quote.
pub fn split_argv(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {
                if c == '\\' {
                    cur.push(chars.next()?);
                } else {
                    cur.push(c);
                }
            }
            None if c.is_whitespace() => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            None => {
                has = true;
                match c {
                    '"' | '\'' => quote = Some(c),
                    '\\' => cur.push(chars.next()?),
                    _ => cur.push(c),
                }
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if has {
        out.push(cur);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn parse(text: &str) -> (Parsed, tempfile::TempDir) {
        let d = tempfile::tempdir().unwrap();
        let text = text.replace("{D}", d.path().to_str().unwrap());
        fs::write(d.path().join("a.log"), "a").unwrap();
        fs::write(d.path().join("b.log"), "b").unwrap();
        let conf = d.path().join("conf");
        fs::write(&conf, text).unwrap();
        (read_paths(&[conf.to_str().unwrap().to_owned()], false), d)
    }

    #[test]
    fn globals_stanzas_and_scripts() {
        let (p, d) = parse(
            "weekly\nrotate 4\ncreate\n\n# comment\n{D}/*.log {\n    daily\n    rotate 7\n    compress\n    postrotate\n        /usr/bin/killall -HUP syslogd\n    endscript\n}\n\"{D}/missing.log\" {\n  missingok\n  size=10k\n}\n",
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.sets.len(), 2);
        let a = &p.sets[0];
        let dir = d.path().to_str().unwrap();
        assert_eq!(a.files, [format!("{dir}/a.log"), format!("{dir}/b.log")]);
        assert_eq!(a.opts.criterion, Criterion::Daily);
        assert_eq!(a.opts.rotate, 7);
        assert!(a.opts.compress && a.opts.create.is_some());
        match &a.opts.postrotate {
            Some(Script::Text { body, origin }) => {
                assert_eq!(body, "\n        /usr/bin/killall -HUP syslogd\n");
                assert!(origin.ends_with("conf:10"), "{origin}");
            }
            other => panic!("{other:?}"),
        }
        let b = &p.sets[1];
        assert_eq!(b.files, [format!("{dir}/missing.log")]);
        assert_eq!(b.opts.criterion, Criterion::Size(10 * 1024));
        assert_eq!(b.opts.rotate, 4);
        assert_eq!(b.opts.postrotate, None);
    }

    #[test]
    fn errors_name_file_and_line_and_skip_only_the_stanza() {
        let (p, _d) = parse(
            "{D}/a.log {\n  rotate many\n  postrotate\n    echo hi\n  endscript\n}\n{D}/b.log {\n  frobnicate\n  daily\n}\n",
        );
        assert_eq!(p.sets.len(), 1, "{:?}", p.sets);
        assert!(p.sets[0].files[0].ends_with("b.log"));
        assert_eq!(p.sets[0].opts.criterion, Criterion::Daily);
        assert!(
            p.errors[0].ends_with("conf:2 bad rotation count 'many'"),
            "{:?}",
            p.errors
        );
        assert!(
            p.errors
                .iter()
                .any(|e| e.ends_with("conf:8 unknown option 'frobnicate' -- ignoring line")),
            "{:?}",
            p.errors
        );
    }

    #[test]
    fn include_reads_a_directory_in_order_without_taboo_files() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_str().unwrap();
        fs::create_dir(d.path().join("conf.d")).unwrap();
        fs::write(
            d.path().join("conf.d/b"),
            format!("{dir}/b.log {{\n rotate 2\n}}\n"),
        )
        .unwrap();
        fs::write(
            d.path().join("conf.d/a"),
            format!("{dir}/a.log {{\n rotate 1\n}}\n"),
        )
        .unwrap();
        fs::write(
            d.path().join("conf.d/c.dpkg-old"),
            format!("{dir}/c.log {{\n}}\n"),
        )
        .unwrap();
        fs::write(d.path().join("main"), "compress\ninclude conf.d\n").unwrap();
        let p = read_paths(&[format!("{dir}/main")], false);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let names: Vec<_> = p.sets.iter().map(|s| s.files[0].clone()).collect();
        assert_eq!(names, [format!("{dir}/a.log"), format!("{dir}/b.log")]);
        assert!(p.sets.iter().all(|s| s.opts.compress));
    }

    #[test]
    fn argv_splitting_follows_popt() {
        assert_eq!(
            split_argv("/a \"/b c\" '/d e'\n /f\\ g").unwrap(),
            ["/a", "/b c", "/d e", "/f g"]
        );
        assert!(split_argv("\"open").is_none());
    }
}
