//! The file system side: a walk by directory handle (wasi:filesystem's
//! `open-at` and `stat-at` without symlink following, one component at a
//! time), then removals by `unlink-file-at` in a directory reopened the
//! same way, each file checked to be the one judged. Only inside opsd
//! (wasm32); natively it says so.

use crate::Report;
use crate::config::Checked;
use opsd_sdk::PluginError;

#[cfg(not(target_arch = "wasm32"))]
pub fn clean(_cfg: &Checked, _now_ms: i64, _dry_run: bool) -> Result<Report, PluginError> {
    Err(PluginError::other(
        "unsupported",
        "clean walks files through wasi:filesystem: it runs inside opsd only",
    ))
}

#[cfg(target_arch = "wasm32")]
pub use wasi_impl::clean;

#[cfg(target_arch = "wasm32")]
mod wasi_impl {
    use super::*;
    use crate::plan::{self, Entry, Kind, Why};
    use std::collections::{BTreeMap, BTreeSet};
    use wasip2::filesystem::preopens::get_directories;
    use wasip2::filesystem::types::{
        Descriptor, DescriptorFlags, DescriptorStat, DescriptorType, ErrorCode, OpenFlags,
        PathFlags,
    };

    /// One line of the details for a file that goes.
    fn line(root: &str, e: &Entry, why: Why, cfg: &Checked, now_ms: i64) -> String {
        let days = (now_ms - e.mtime_ms).max(0) as f64 / 86_400_000.0;
        let why = match why {
            Why::Age => format!("older than {}", cfg.older_than_text),
            Why::Budget => "over max_size".into(),
        };
        let link = if e.kind == Kind::Symlink {
            " (symlink)"
        } else {
            ""
        };
        format!(
            "{root}/{}{link}, {}, {days:.1} days old, {why}",
            e.rel,
            opsd_sdk::human_bytes(e.size)
        )
    }

    /// What a scan of one root found.
    struct Scan {
        entries: Vec<Entry>,
        /// Directories under the root (relative), deepest last.
        dirs: Vec<(String, i64)>,
        complete: bool,
    }

    fn mtime_ms(st: &DescriptorStat) -> i64 {
        st.data_modification_timestamp
            .map(|t| t.seconds as i64 * 1000 + t.nanoseconds as i64 / 1_000_000)
            .unwrap_or(0)
    }

    fn join(rel: &str, name: &str) -> String {
        if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        }
    }

    /// Opens a directory by name in `dir`, never following a symlink;
    /// for writing when `write` (removals need it).
    fn open_dir(dir: &Descriptor, name: &str, write: bool) -> Result<Descriptor, ErrorCode> {
        let mut flags = DescriptorFlags::READ;
        if write {
            flags |= DescriptorFlags::MUTATE_DIRECTORY;
        }
        dir.open_at(PathFlags::empty(), name, OpenFlags::DIRECTORY, flags)
    }

    /// The root: the grant that holds `path`, then each component below
    /// it opened without following links.
    fn open_root(path: &str, write: bool) -> Result<Descriptor, String> {
        let preopens = get_directories();
        let best = preopens
            .iter()
            .filter(|(_, guest)| {
                let g = guest.trim_end_matches('/');
                path == g || path.starts_with(&format!("{g}/")) || g.is_empty()
            })
            .max_by_key(|(_, guest)| guest.len());
        let Some((grant, guest)) = best else {
            return Err(format!(
                "{path} is in no grant: add {{ host = \"...\", guest = \"{path}\", access = \"rw\" }} to the job's fs grants"
            ));
        };
        let rest = path[guest.trim_end_matches('/').len()..].trim_start_matches('/');
        let mut dir = open_dir(grant, ".", write).map_err(|e| {
            if matches!(
                e,
                ErrorCode::NotPermitted | ErrorCode::ReadOnly | ErrorCode::Access
            ) {
                format!("{path}: the grant {guest} is read-only; clean needs access = \"rw\"")
            } else {
                format!("{path}: {e}")
            }
        })?;
        let mut walked = guest.trim_end_matches('/').to_owned();
        for comp in rest.split('/').filter(|c| !c.is_empty()) {
            walked.push('/');
            walked.push_str(comp);
            dir = open_dir(&dir, comp, write).map_err(|e| match e {
                ErrorCode::Loop | ErrorCode::NotDirectory => {
                    format!("{walked} is a symlink or not a directory: clean never follows links")
                }
                e => format!("{walked}: {e}"),
            })?;
        }
        Ok(dir)
    }

    /// Names in a directory (all of it, so the stream is closed before
    /// descending), at most `budget`.
    fn list(dir: &Descriptor, budget: &mut u64) -> Result<(Vec<String>, bool), ErrorCode> {
        let stream = dir.read_directory()?;
        let mut names = Vec::new();
        while let Some(e) = stream.read_directory_entry()? {
            if *budget == 0 {
                return Ok((names, false));
            }
            *budget -= 1;
            names.push(e.name);
        }
        Ok((names, true))
    }

    struct Walker<'a> {
        cfg: &'a Checked,
        root: &'a str,
        budget: u64,
        scan: Scan,
        report: &'a mut Report,
    }

    impl Walker<'_> {
        fn walk(&mut self, dir: &Descriptor, rel: &str, depth: usize) {
            let (names, whole) = match list(dir, &mut self.budget) {
                Ok(v) => v,
                Err(e) => {
                    self.report
                        .warnings
                        .push(format!("{}/{rel}: cannot list: {e}", self.root));
                    self.scan.complete = false;
                    return;
                }
            };
            if !whole {
                self.scan.complete = false;
            }
            for name in names {
                let rel_name = join(rel, &name);
                // Never follows: a link is stat'ed as itself.
                let st = match dir.stat_at(PathFlags::empty(), &name) {
                    Ok(st) => st,
                    Err(ErrorCode::NoEntry) => continue,
                    Err(e) => {
                        self.report
                            .warnings
                            .push(format!("{}/{rel_name}: {e}", self.root));
                        continue;
                    }
                };
                match st.type_ {
                    DescriptorType::Directory => {
                        if plan::dir_excluded(self.cfg, &rel_name) {
                            continue;
                        }
                        if depth + 1 > self.cfg.max_depth {
                            self.report.warnings.push(format!(
                                "{}/{rel_name}: deeper than max_depth ({}), not entered",
                                self.root, self.cfg.max_depth
                            ));
                            self.scan.complete = false;
                            continue;
                        }
                        match open_dir(dir, &name, false) {
                            Ok(sub) => {
                                self.scan.dirs.push((rel_name.clone(), mtime_ms(&st)));
                                self.walk(&sub, &rel_name, depth + 1);
                            }
                            // Swapped for a link since it was stat'ed.
                            Err(ErrorCode::Loop | ErrorCode::NotDirectory) => {
                                self.report.notes.push(format!(
                                    "{}/{rel_name} became a symlink while looked at: not followed",
                                    self.root
                                ));
                            }
                            Err(e) => self
                                .report
                                .warnings
                                .push(format!("{}/{rel_name}: {e}", self.root)),
                        }
                    }
                    DescriptorType::RegularFile | DescriptorType::SymbolicLink => {
                        if !plan::selected(self.cfg, &rel_name) {
                            continue;
                        }
                        let hash = dir
                            .metadata_hash_at(PathFlags::empty(), &name)
                            .map(|h| (h.lower, h.upper))
                            .unwrap_or((0, 0));
                        self.scan.entries.push(Entry {
                            rel: rel_name,
                            kind: if st.type_ == DescriptorType::SymbolicLink {
                                Kind::Symlink
                            } else {
                                Kind::File
                            },
                            size: st.size,
                            mtime_ms: mtime_ms(&st),
                            hash,
                        });
                    }
                    // FIFOs, sockets, devices: never ours to remove.
                    _ => {}
                }
                if self.budget == 0 {
                    self.scan.complete = false;
                    return;
                }
            }
        }
    }

    /// The directory `rel` under `root`, reopened a component at a time
    /// without following links (a directory swapped for a link since the
    /// scan is refused here, so nothing is removed through it).
    fn reopen(root: &Descriptor, rel: &str) -> Result<Descriptor, ErrorCode> {
        let mut dir = open_dir(root, ".", true)?;
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            dir = open_dir(&dir, comp, true)?;
        }
        Ok(dir)
    }

    fn split(rel: &str) -> (&str, &str) {
        rel.rsplit_once('/').unwrap_or(("", rel))
    }

    /// Cleans every root; errors only for a root that cannot be opened.
    pub fn clean(cfg: &Checked, now_ms: i64, dry_run: bool) -> Result<Report, PluginError> {
        let mut report = Report::default();
        let mut left = cfg.max_deletions;
        for root_path in &cfg.paths {
            let root =
                open_root(root_path, !dry_run).map_err(|e| PluginError::other("denied", e))?;
            let budget = cfg.max_entries.saturating_sub(report.scanned);
            let mut w = Walker {
                cfg,
                root: root_path,
                budget,
                scan: Scan {
                    entries: Vec::new(),
                    dirs: Vec::new(),
                    complete: true,
                },
                report: &mut report,
            };
            w.walk(&root, "", 0);
            let looked = budget - w.budget;
            let scan = w.scan;
            report.scanned += looked;
            if !scan.complete {
                report.warnings.push(format!(
                    "{root_path}: the scan stopped early (max_entries {}, max_depth {} or an unreadable directory): only files past older_than were judged{}",
                    cfg.max_entries,
                    cfg.max_depth,
                    if cfg.keep_newest > 0 { ", and none removed as keep_newest needs them all" } else { "" }
                ));
            }
            let p = plan::plan(cfg, &scan.entries, now_ms, scan.complete);
            report.bytes_left += p.bytes_left;
            if let Some(o) = p.over_budget {
                report.warnings.push(format!("{root_path}: {o}"));
            }
            let mut chosen = p.remove;
            if chosen.len() > left {
                let more = chosen.len() - left;
                let bytes: u64 = chosen[left..]
                    .iter()
                    .map(|&(i, _)| scan.entries[i].size)
                    .sum();
                report.bytes_left += bytes;
                report.warnings.push(format!(
                    "{root_path}: {more} more files would go, past max_deletions ({}); the next run goes on",
                    cfg.max_deletions
                ));
                chosen.truncate(left);
            }
            left -= chosen.len();
            let mut touched: BTreeSet<String> = BTreeSet::new();
            // By directory, so each is reopened once.
            let mut by_dir: BTreeMap<&str, Vec<(usize, Why)>> = BTreeMap::new();
            for &(i, why) in &chosen {
                by_dir
                    .entry(split(&scan.entries[i].rel).0)
                    .or_default()
                    .push((i, why));
            }
            let mut done: Vec<(usize, Why)> = Vec::new();
            for (rel_dir, items) in by_dir {
                if dry_run {
                    done.extend(items);
                    continue;
                }
                let dir = match reopen(&root, rel_dir) {
                    Ok(d) => d,
                    Err(e) => {
                        for (i, _) in items {
                            report.errors.push(format!(
                                "{root_path}/{}: not removed: its directory {e} (a symlink now? clean never follows one)",
                                scan.entries[i].rel
                            ));
                        }
                        continue;
                    }
                };
                for (i, why) in items {
                    let e = &scan.entries[i];
                    let name = split(&e.rel).1;
                    // The file judged, still: same kind, size, time, inode.
                    let same = dir
                        .stat_at(PathFlags::empty(), name)
                        .ok()
                        .is_some_and(|st| {
                            let kind = match st.type_ {
                                DescriptorType::RegularFile => Some(Kind::File),
                                DescriptorType::SymbolicLink => Some(Kind::Symlink),
                                _ => None,
                            };
                            kind == Some(e.kind) && st.size == e.size && mtime_ms(&st) == e.mtime_ms
                        })
                        && dir
                            .metadata_hash_at(PathFlags::empty(), name)
                            .is_ok_and(|h| (h.lower, h.upper) == e.hash);
                    if !same {
                        report.warnings.push(format!(
                            "{root_path}/{}: changed since it was looked at; left",
                            e.rel
                        ));
                        continue;
                    }
                    match dir.unlink_file_at(name) {
                        Ok(()) => done.push((i, why)),
                        Err(err) => report
                            .errors
                            .push(format!("{root_path}/{}: cannot remove: {err}", e.rel)),
                    }
                }
            }
            done.sort_by_key(|&(i, _)| (scan.entries[i].mtime_ms, scan.entries[i].rel.clone()));
            for (i, why) in done {
                let e = &scan.entries[i];
                report.removed.push(line(root_path, e, why, cfg, now_ms));
                report.bytes += e.size;
                let mut d = split(&e.rel).0;
                while !d.is_empty() {
                    touched.insert(d.to_owned());
                    d = split(d).0;
                }
            }
            if cfg.remove_empty_dirs && !dry_run {
                // Deepest first, so a parent emptied by its children goes too.
                let mut dirs = scan.dirs.clone();
                dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.matches('/').count()));
                for (rel, mtime) in dirs {
                    let old = cfg
                        .older_than
                        .is_some_and(|a| plan::older(a, mtime, now_ms));
                    if !touched.contains(&rel) && !old {
                        continue;
                    }
                    let (parent, name) = split(&rel);
                    let Ok(pd) = reopen(&root, parent) else {
                        continue;
                    };
                    // Only an empty directory is removed; a link is not one.
                    match pd.stat_at(PathFlags::empty(), name) {
                        Ok(st) if st.type_ == DescriptorType::Directory => {}
                        _ => continue,
                    }
                    if pd.remove_directory_at(name).is_ok() {
                        report.dirs.push(format!("{root_path}/{rel}"));
                        let mut d = parent;
                        while !d.is_empty() {
                            touched.insert(d.to_owned());
                            d = split(d).0;
                        }
                    }
                }
            }
        }
        Ok(report)
    }
}
