//! The options one log set is rotated with: logrotate's directives, with
//! logrotate's defaults, whichever way they were written (a logrotate
//! config file or the job's TOML table).

/// What makes a log due, as logrotate's `size`/`hourly`/`daily`/...
/// (the last one written wins, as in logrotate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Criterion {
    /// `size N` (logrotate's default, with 1 MiB).
    Size(u64),
    Hourly,
    Daily,
    /// `weekly [weekday]`: 0-6 is Sunday-Saturday, 7 means "7 days after
    /// the last rotation".
    Weekly(u32),
    Monthly,
    Yearly,
    /// opsd's TOML table without a criterion: the job's schedule decides,
    /// every run rotates.
    EveryRun,
}

/// A script directive's body and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// Shell text, as in a logrotate config; run through `sh -c` when it
    /// needs a shell, as one program otherwise.
    Text { body: String, origin: String },
    /// An argv list from the TOML table: run as is, never through a shell.
    Argv { argv: Vec<String>, origin: String },
}

impl Script {
    /// Where the script was written, for messages.
    pub fn origin(&self) -> &str {
        match self {
            Script::Text { origin, .. } | Script::Argv { origin, .. } => origin,
        }
    }
}

/// `create` / `createolddir`: a mode and owner, each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModeOwner {
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// Every directive of one log set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub criterion: Criterion,
    pub minsize: u64,
    pub maxsize: u64,
    /// Generations kept; 0 removes the rotated log, -1 keeps every one.
    pub rotate: i64,
    pub start: u64,
    /// Days; 0 is off.
    pub minage: u64,
    pub maxage: u64,
    pub compress: bool,
    pub delaycompress: bool,
    /// `compresscmd`; none means the built-in gzip.
    pub compress_cmd: Option<String>,
    pub compress_options: Vec<String>,
    /// `compressext`; none means the command's usual extension.
    pub compress_ext: Option<String>,
    pub copytruncate: bool,
    pub copy: bool,
    pub renamecopy: bool,
    pub create: Option<ModeOwner>,
    pub createolddir: Option<ModeOwner>,
    pub olddir: Option<String>,
    pub dateext: bool,
    pub dateformat: Option<String>,
    pub dateyesterday: bool,
    pub datehourago: bool,
    pub extension: Option<String>,
    pub addextension: Option<String>,
    pub ifempty: bool,
    pub missingok: bool,
    pub sharedscripts: bool,
    pub allowhardlink: bool,
    pub ignoreduplicates: bool,
    /// `su` was given: the logs' directories are trusted as they are.
    pub su: bool,
    pub prerotate: Option<Script>,
    pub postrotate: Option<Script>,
    pub firstaction: Option<Script>,
    pub lastaction: Option<Script>,
    pub preremove: Option<Script>,
    /// opsd's TOML table: names that look rotated (`x.log.1`, `x.log.2.gz`)
    /// are never logs themselves, so `/logs/*` is safe to write.
    pub skip_rotated_names: bool,
}

impl Default for Options {
    /// logrotate's built-in defaults (not Debian's /etc/logrotate.conf).
    fn default() -> Self {
        Options {
            criterion: Criterion::Size(1024 * 1024),
            minsize: 0,
            maxsize: 0,
            rotate: 0,
            start: 1,
            minage: 0,
            maxage: 0,
            compress: false,
            delaycompress: false,
            compress_cmd: None,
            compress_options: Vec::new(),
            compress_ext: None,
            copytruncate: false,
            copy: false,
            renamecopy: false,
            create: None,
            createolddir: None,
            olddir: None,
            dateext: false,
            dateformat: None,
            dateyesterday: false,
            datehourago: false,
            extension: None,
            addextension: None,
            ifempty: true,
            missingok: false,
            sharedscripts: false,
            allowhardlink: false,
            ignoreduplicates: false,
            su: false,
            prerotate: None,
            postrotate: None,
            firstaction: None,
            lastaction: None,
            preremove: None,
            skip_rotated_names: false,
        }
    }
}

/// How compressed generations are made and named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compressor {
    /// gzip in the plugin itself, at this level.
    BuiltinGzip(u32),
    /// A program from the exec grant, fed the log on stdin.
    Program { program: String, args: Vec<String> },
}

impl Options {
    /// The compressed-file extension: `compressext`, or the one that went
    /// with `compresscmd`, or `.gz`.
    pub fn compress_ext(&self) -> String {
        self.compress_ext
            .clone()
            .unwrap_or_else(|| ".gz".to_owned())
    }

    /// The built-in gzip stands in for `gzip` with level options; any
    /// other command or option runs the program through the exec grant.
    pub fn compressor(&self) -> Compressor {
        let is_gzip = self
            .compress_cmd
            .as_deref()
            .is_none_or(|c| c.rsplit('/').next() == Some("gzip"));
        if is_gzip {
            let mut level = 6;
            let mut builtin = true;
            for opt in &self.compress_options {
                match opt.as_str() {
                    "--best" => level = 9,
                    "--fast" => level = 1,
                    "-n" | "--no-name" | "-q" | "--quiet" => {}
                    o if o.len() == 2
                        && o.starts_with('-')
                        && o.as_bytes()[1].is_ascii_digit()
                        && o.as_bytes()[1] != b'0' =>
                    {
                        level = u32::from(o.as_bytes()[1] - b'0');
                    }
                    _ => builtin = false,
                }
            }
            if builtin {
                return Compressor::BuiltinGzip(level);
            }
        }
        Compressor::Program {
            program: self
                .compress_cmd
                .clone()
                .unwrap_or_else(|| "gzip".to_owned()),
            args: self.compress_options.clone(),
        }
    }
}

/// The usual extension of a compression program (by base name), which
/// `compresscmd` sets as logrotate does.
pub fn ext_for_command(base: &str) -> Option<&'static str> {
    Some(match base {
        "gzip" => ".gz",
        "bzip2" => ".bz2",
        "xz" => ".xz",
        "zstd" => ".zst",
        "compress" => ".Z",
        "zip" => "zip",
        _ => return None,
    })
}

/// Parses logrotate's size syntax: a number with an optional `k`, `M` or
/// `G` suffix (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1u64 << 10),
        Some((i, 'M')) => (&t[..i], 1 << 20),
        Some((i, 'G')) => (&t[..i], 1 << 30),
        Some((_, c)) if !c.is_ascii_digit() => {
            return Err(format!(
                "size `{text}` has an unknown unit `{c}`: write bytes, or a number with k, M or G (`10M`)"
            ));
        }
        _ => (t, 1),
    };
    let n: u64 = parse_c_number(digits.trim()).ok_or_else(|| {
        format!("size `{text}` is not a size: write bytes, or a number with k, M or G (`10M`)")
    })?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

/// A number as C's `strtoul(s, _, 0)` reads it: decimal, `0x` hex or
/// leading-zero octal.
pub fn parse_c_number(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// Parses `[mode] [owner [group]]` as logrotate's `create` reads it.
pub fn parse_mode_owner(text: &str) -> Result<ModeOwner, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = ModeOwner::default();
    let mut rest = &words[..];
    if let Some(first) = rest.first()
        && first.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        let mode = u32::from_str_radix(first, 8)
            .map_err(|_| format!("mode `{first}` is not an octal mode such as 0640"))?;
        if mode > 0o7777 {
            return Err(format!("mode `{first}` is not an octal mode such as 0640"));
        }
        out.mode = Some(mode);
        rest = &rest[1..];
    }
    match rest {
        [] => {}
        [owner] => out.owner = Some((*owner).to_owned()),
        [owner, group] => {
            out.owner = Some((*owner).to_owned());
            out.group = Some((*group).to_owned());
        }
        _ => {
            return Err(format!(
                "too many words in `{text}`: write [mode] [owner [group]]"
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_logrotate_suffixes() {
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("100k").unwrap(), 102_400);
        assert_eq!(parse_size("10M").unwrap(), 10 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert!(parse_size("ten").unwrap_err().contains("`ten`"));
        // logrotate reads `m` as an unknown unit, not as mega.
        assert!(parse_size("10m").is_err());
    }

    #[test]
    fn create_reads_mode_and_owner() {
        assert_eq!(
            parse_mode_owner("0640 root adm").unwrap(),
            ModeOwner {
                mode: Some(0o640),
                owner: Some("root".into()),
                group: Some("adm".into())
            }
        );
        assert_eq!(
            parse_mode_owner("www-data").unwrap().owner.as_deref(),
            Some("www-data")
        );
        assert_eq!(parse_mode_owner("").unwrap(), ModeOwner::default());
        assert!(parse_mode_owner("0640 a b c").is_err());
    }

    #[test]
    fn gzip_options_stay_builtin_other_programs_do_not() {
        let mut o = Options {
            compress_options: vec!["-9".into()],
            ..Options::default()
        };
        assert_eq!(o.compressor(), Compressor::BuiltinGzip(9));
        assert_eq!(o.compress_ext(), ".gz");
        o.compress_cmd = Some("/usr/bin/xz".into());
        assert_eq!(ext_for_command("xz"), Some(".xz"));
        assert!(matches!(o.compressor(), Compressor::Program { .. }));
    }
}
