//! File-system checks: secrets and backups others can read, world-writable
//! files and directories without the sticky bit, SUID/SGID files against
//! the baseline, certificates near expiry.

use crate::findings::{Finding, Severity};
use opsd_sdk::fsinfo;
use std::collections::BTreeSet;

/// Entries visited at most per walk, so a mistaken `/` grant cannot make
/// a run take forever.
const MAX_ENTRIES: usize = 200_000;
const MAX_DEPTH: usize = 16;

/// One entry found by a walk.
pub struct Entry {
    pub path: String,
    pub name: String,
    pub is_dir: bool,
}

/// Every file and directory under `root` (itself included), not following
/// symlinks. Returns the entries and problems (unreadable directories,
/// the entry cap).
pub fn walk(root: &str) -> (Vec<Entry>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let meta = match std::fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) => {
            problems.push(format!("{root}: {e}"));
            return (out, problems);
        }
    };
    let name = root.rsplit('/').next().unwrap_or(root).to_owned();
    out.push(Entry {
        path: root.to_owned(),
        name,
        is_dir: meta.is_dir(),
    });
    let mut stack = vec![(root.trim_end_matches('/').to_owned(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                problems.push(format!("cannot list {dir}: {e}"));
                continue;
            }
        };
        let mut names: Vec<(String, bool)> = rd
            .flatten()
            .filter_map(|e| {
                let ft = e.file_type().ok()?;
                if ft.is_symlink() {
                    return None;
                }
                Some((e.file_name().to_string_lossy().into_owned(), ft.is_dir()))
            })
            .collect();
        names.sort();
        for (name, is_dir) in names {
            if out.len() >= MAX_ENTRIES {
                problems.push(format!(
                    "stopped after {MAX_ENTRIES} entries under {root}; narrow the paths"
                ));
                return (out, problems);
            }
            let path = format!("{dir}/{name}");
            if is_dir && depth + 1 < MAX_DEPTH {
                stack.push((path.clone(), depth + 1));
            }
            out.push(Entry { path, name, is_dir });
        }
    }
    (out, problems)
}

fn octal(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// Secret files that group or others can read.
pub fn secrets(
    paths: &[String],
    names: &[String],
    findings: &mut Vec<Finding>,
    problems: &mut Vec<String>,
) {
    let opts = glob::MatchOptions {
        require_literal_leading_dot: false,
        ..Default::default()
    };
    let pats: Vec<glob::Pattern> = names
        .iter()
        .filter_map(|n| glob::Pattern::new(n).ok())
        .collect();
    for root in paths {
        let (entries, mut p) = walk(root);
        problems.append(&mut p);
        for e in entries.iter().filter(|e| !e.is_dir) {
            if !pats.iter().any(|p| p.matches_with(&e.name, opts)) {
                continue;
            }
            readable_by_others(
                &e.path,
                "secret-readable",
                "a secret file",
                findings,
                problems,
            );
        }
    }
}

/// Every file in backup directories must be private too.
pub fn backups(paths: &[String], findings: &mut Vec<Finding>, problems: &mut Vec<String>) {
    for root in paths {
        let (entries, mut p) = walk(root);
        problems.append(&mut p);
        for e in entries.iter().filter(|e| !e.is_dir) {
            readable_by_others(&e.path, "backup-readable", "a backup", findings, problems);
        }
    }
}

fn readable_by_others(
    path: &str,
    id: &str,
    what: &str,
    findings: &mut Vec<Finding>,
    problems: &mut Vec<String>,
) {
    let m = match fsinfo::mode_owner(path) {
        Ok(m) => m,
        Err(e) => {
            problems.push(format!("{path}: {e}"));
            return;
        }
    };
    let (severity, who) = if m.mode & 0o004 != 0 {
        (Severity::P1, "everyone")
    } else if m.mode & 0o040 != 0 {
        (Severity::P2, "its group")
    } else {
        return;
    };
    findings.push(Finding {
        id: id.into(),
        key: path.into(),
        severity,
        title: format!("{what} readable by {who} (mode {})", octal(m.mode)),
        fix: format!("chmod 600 {path}"),
    });
}

/// World-writable files, and world-writable directories without the
/// sticky bit (anyone can delete or replace what others put there).
pub fn world_writable(paths: &[String], findings: &mut Vec<Finding>, problems: &mut Vec<String>) {
    for root in paths {
        let (entries, mut p) = walk(root);
        problems.append(&mut p);
        for e in &entries {
            let m = match fsinfo::mode_owner(&e.path) {
                Ok(m) => m,
                Err(err) => {
                    problems.push(format!("{}: {err}", e.path));
                    continue;
                }
            };
            if m.mode & 0o002 == 0 {
                continue;
            }
            if e.is_dir {
                if m.mode & 0o1000 != 0 {
                    continue;
                }
                findings.push(Finding {
                    id: "world-writable-dir".into(),
                    key: e.path.clone(),
                    severity: Severity::P1,
                    title: format!(
                        "directory writable by everyone without the sticky bit (mode {})",
                        octal(m.mode)
                    ),
                    fix: format!("chmod o-w {} (or chmod +t if it is a shared drop)", e.path),
                });
            } else {
                findings.push(Finding {
                    id: "world-writable-file".into(),
                    key: e.path.clone(),
                    severity: Severity::P2,
                    title: format!("file writable by everyone (mode {})", octal(m.mode)),
                    fix: format!("chmod o-w {}", e.path),
                });
            }
        }
    }
}

/// SUID/SGID files now present.
pub fn suid_files(paths: &[String], problems: &mut Vec<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for root in paths {
        let (entries, mut p) = walk(root);
        problems.append(&mut p);
        for e in entries.iter().filter(|e| !e.is_dir) {
            match fsinfo::mode_owner(&e.path) {
                Ok(m) if m.mode & 0o6000 != 0 => {
                    out.insert(e.path.clone());
                }
                Ok(_) => {}
                Err(err) => problems.push(format!("{}: {err}", e.path)),
            }
        }
    }
    out
}

/// Findings for SUID/SGID files that are neither in the baseline nor
/// allowed.
pub fn suid_findings(
    now: &BTreeSet<String>,
    baseline: &BTreeSet<String>,
    allow: &[String],
) -> Vec<Finding> {
    now.iter()
        .filter(|p| !baseline.contains(*p) && !allow.contains(p))
        .map(|p| {
            let mode = fsinfo::mode_owner(p)
                .map(|m| octal(m.mode))
                .unwrap_or_default();
            Finding {
                id: "suid-new".into(),
                key: p.clone(),
                severity: Severity::P1,
                title: format!("SUID/SGID file not in the baseline (mode {mode})"),
                fix: format!(
                    "chmod ug-s {p} if it should not be privileged, or add it to suid.allow"
                ),
            }
        })
        .collect()
}

/// Certificates expired or near expiry.
pub fn certs(
    cfg: &crate::config::Certs,
    now: i64,
    findings: &mut Vec<Finding>,
    problems: &mut Vec<String>,
) {
    for root in &cfg.paths {
        let files = match opsd_x509::find_cert_files(root) {
            Ok(f) => f,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        for file in files {
            let info = match std::fs::read(&file)
                .map_err(|e| format!("{file}: {e}"))
                .and_then(|b| opsd_x509::parse_pem(&file, &b))
            {
                Ok(i) => i,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            let days = info.days_left(now);
            let names = if info.dns_names.is_empty() {
                info.subject.clone()
            } else {
                info.dns_names.join(", ")
            };
            let (id, severity, title) = if days < 0 {
                (
                    "cert-expired",
                    Severity::P0,
                    format!("certificate for {names} expired {} days ago", -days),
                )
            } else if days < cfg.critical_days {
                (
                    "cert-expiring",
                    Severity::P1,
                    format!("certificate for {names} expires in {days} days"),
                )
            } else if days < cfg.warn_days {
                (
                    "cert-expiring",
                    Severity::P2,
                    format!("certificate for {names} expires in {days} days"),
                )
            } else {
                continue;
            };
            findings.push(Finding {
                id: id.into(),
                key: file.clone(),
                severity,
                title,
                fix: "renew it (a cert-renew job, or certbot renew) and reload what serves it"
                    .into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &std::path::Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn secrets_others_can_read_are_found_by_name() {
        let d = tempfile::tempdir().unwrap();
        let app = d.path().join("app");
        std::fs::create_dir_all(app.join("conf")).unwrap();
        for (name, mode) in [
            (".env", 0o644),
            ("conf/server.key", 0o640),
            ("ok.env", 0o600),
            ("readme.txt", 0o644),
        ] {
            std::fs::write(app.join(name), "x").unwrap();
            chmod(&app.join(name), mode);
        }
        let (mut f, mut p) = (Vec::new(), Vec::new());
        secrets(
            &[app.to_str().unwrap().to_owned()],
            &crate::config::default_secret_names(),
            &mut f,
            &mut p,
        );
        assert!(p.is_empty(), "{p:?}");
        let got: Vec<(String, Severity)> = f
            .iter()
            .map(|f| (f.key.rsplit('/').next().unwrap().to_owned(), f.severity))
            .collect();
        assert_eq!(
            got,
            [
                (".env".to_owned(), Severity::P1),
                ("server.key".to_owned(), Severity::P2)
            ]
        );
        assert!(f[0].fix.starts_with("chmod 600 "));
    }

    #[test]
    fn world_writable_dirs_need_the_sticky_bit() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir(root.join("drop")).unwrap();
        chmod(&root.join("drop"), 0o777);
        std::fs::create_dir(root.join("tmp")).unwrap();
        chmod(&root.join("tmp"), 0o1777);
        std::fs::write(root.join("f"), "x").unwrap();
        chmod(&root.join("f"), 0o666);
        let (mut f, mut p) = (Vec::new(), Vec::new());
        world_writable(&[root.to_str().unwrap().to_owned()], &mut f, &mut p);
        let ids: Vec<&str> = f.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["world-writable-dir", "world-writable-file"], "{f:?}");
    }
}
