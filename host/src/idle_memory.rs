//! What an idle daemon hands back to the kernel: the heap a start, reload
//! or compile freed, the compiled code of plugins no run is using, and the
//! pages of its own binary that starting touched.
//!
//! A daemon spends nearly all its life waiting for the next fire; what it
//! touched once to start (the configuration parser, the checks, the
//! compile cache's loader, the HTTP stack's setup) need not stay mapped
//! while it waits.

/// Gives the heap that a start, a reload or a compile freed back to the
/// kernel. glibc trims only the top of its heap by itself and keeps freed
/// memory in its arenas (one per thread that allocated), so without this a
/// daemon that checked 10,000 jobs, or compiled the six built-ins, keeps
/// tens of MiB it no longer uses (bench/growth.py,
/// bench/daemon_footprint.py).
pub fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory in glibc's own
    // arenas; it touches no memory the program holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Everything a daemon that is about to wait can give back: the freed
/// heap and its own code. Called after the scheduler's first pass, after
/// each reload, and when the last plugin in use has gone idle, on a
/// blocking thread: reading smaps and dropping 40 MiB of mappings takes
/// 1-2 ms (`opsd -vv daemon` logs it).
pub fn release_all() {
    let took = std::time::Instant::now();
    release_freed_heap();
    let bytes = release_own_code();
    tracing::debug!(
        bytes,
        ms = format!("{:.1}", took.elapsed().as_secs_f64() * 1e3),
        "released the freed heap and the binary's idle pages"
    );
}

/// Unmaps `[start, end)` (rounded inward to pages) from this process and
/// asks the kernel to write it out; for memory that only ever holds a
/// file's contents, such as a plugin's compiled code mapped from the
/// compile cache, the next touch reads it in again.
pub fn page_out(start: usize, end: usize) {
    advise(start, end, Advice::PageOut);
}

/// Unmaps the pages of opsd's own binary that hold only the file's
/// contents (its code and read-only data) from this process. They stay
/// in the page cache, so code the daemon runs next faults back in without
/// reading the disk; what an idle daemon does not run stops counting in
/// its resident set. Returns the bytes of mappings advised.
///
/// Only mappings that cannot be written and hold no private (copied)
/// page are touched: dropping a copied page would lose what was written
/// to it (relocations in `.data.rel.ro`, a debugger's breakpoint).
pub fn release_own_code() -> usize {
    #[cfg(target_os = "linux")]
    {
        let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
            return 0;
        };
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
            return 0;
        };
        let mut released = 0;
        for (start, end) in clean_file_mappings(&smaps, &exe.to_string_lossy()) {
            advise(start, end, Advice::DontNeed);
            released += end - start;
        }
        released
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// Resident KiB of this process's mappings whose path `matches`: what
/// the footprint tests measure before and after a release.
pub fn resident_kib(matches: impl Fn(&str) -> bool) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    mappings(&smaps)
        .iter()
        .filter(|m| matches(&m.path))
        .map(|m| m.rss_kib)
        .sum()
}

/// One mapping of an smaps listing, with what the release looks at.
struct Mapping {
    start: usize,
    end: usize,
    writable: bool,
    /// As the kernel shows it: a newline in a file name is escaped
    /// (`\012`), so no name can pass for a mapping line of its own.
    path: String,
    rss_kib: u64,
    /// None when the listing does not say: such a mapping is not released.
    anonymous_kib: Option<u64>,
}

/// The mappings of an smaps listing.
fn mappings(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        let kib = |mut fields: std::str::SplitWhitespace| {
            fields.next().and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            let writable = fields.next().unwrap_or("").contains('w');
            // offset, device, inode, then the path (which may hold spaces).
            let path = fields.skip(3).collect::<Vec<_>>().join(" ");
            out.push(Mapping {
                start,
                end,
                writable,
                path,
                rss_kib: 0,
                anonymous_kib: None,
            });
        } else if let Some(m) = out.last_mut() {
            match first {
                "Rss:" => m.rss_kib = kib(fields),
                "Anonymous:" => m.anonymous_kib = Some(kib(fields)),
                _ => {}
            }
        }
    }
    out
}

/// The mappings of `file` in an smaps listing that are not writable and
/// hold no anonymous page, as (start, end).
fn clean_file_mappings(smaps: &str, file: &str) -> Vec<(usize, usize)> {
    mappings(smaps)
        .into_iter()
        .filter(|m| m.path == file && !m.writable && m.anonymous_kib == Some(0))
        .map(|m| (m.start, m.end))
        .collect()
}

#[derive(Clone, Copy)]
enum Advice {
    PageOut,
    DontNeed,
}

fn advise(start: usize, end: usize, advice: Advice) {
    #[cfg(target_os = "linux")]
    {
        let page = 4096;
        let (start, end) = (start.div_ceil(page) * page, end / page * page);
        if end > start {
            let advice = match advice {
                Advice::PageOut => libc::MADV_PAGEOUT,
                Advice::DontNeed => libc::MADV_DONTNEED,
            };
            // SAFETY: the callers pass memory this process maps that holds
            // only a file's contents (a plugin's compiled code, kept alive
            // by its caller; the binary's unwritable mappings with no
            // copied page). Dropping such pages changes no contents: the
            // next touch maps the file's page again.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, advice);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, end, advice);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0400000 r--p 00000000 fd:01 1234 /usr/bin/opsd
Size:               4096 kB
Anonymous:             0 kB
55d0a0400000-55d0a2000000 r-xp 00400000 fd:01 1234 /usr/bin/opsd
Rss:               20000 kB
Anonymous:             0 kB
55d0a2000000-55d0a2100000 r--p 02000000 fd:01 1234 /usr/bin/opsd
Anonymous:           512 kB
55d0a2100000-55d0a2200000 rw-p 02100000 fd:01 1234 /usr/bin/opsd
Anonymous:           100 kB
7f0000000000-7f0000100000 r-xp 00000000 fd:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f0000200000-7f0000300000 r-xp 00000000 fd:01 77 /tmp/my dir/opsd
Anonymous:             0 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Anonymous:           132 kB
";

    #[test]
    fn only_the_binarys_clean_unwritable_mappings_are_released() {
        assert_eq!(
            clean_file_mappings(SMAPS, "/usr/bin/opsd"),
            vec![
                (0x55d0a0000000, 0x55d0a0400000),
                (0x55d0a0400000, 0x55d0a2000000)
            ],
            "the relro mapping has copied pages and the data is writable"
        );
        assert_eq!(
            clean_file_mappings(SMAPS, "/tmp/my dir/opsd"),
            vec![(0x7f0000200000, 0x7f0000300000)],
            "a path with a space"
        );
    }

    /// Resident KiB of this process's mappings of its own binary.
    fn own_resident_kib() -> u64 {
        let exe = std::fs::read_link("/proc/self/exe").expect("/proc/self/exe");
        let exe = exe.to_string_lossy();
        resident_kib(|path| *path == *exe)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn releasing_this_process_code_shrinks_it_and_leaves_it_running() {
        let before = own_resident_kib();
        let released = release_own_code();
        let after = own_resident_kib();
        assert!(released > 0, "the test binary's code is mapped");
        assert!(
            after < before,
            "resident pages of the binary {before} KiB -> {after} KiB"
        );
        // The code faults back in: the rest of this test runs it.
        assert_eq!(clean_file_mappings(SMAPS, "/usr/bin/opsd").len(), 2);
    }

    /// A file whose name holds a newline and a forged mapping line naming
    /// the binary, over memory this process writes: mapped here, the
    /// forged range must not come out as the binary's code (dropping it
    /// would lose what was written there).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_name_cannot_forge_a_mapping_of_the_binary() {
        use std::os::fd::AsRawFd;
        let exe = std::fs::read_link("/proc/self/exe").expect("/proc/self/exe");
        let exe = exe.to_string_lossy().into_owned();
        let written = vec![7u8; 1 << 16];
        let (start, end) = (
            written.as_ptr() as usize,
            written.as_ptr() as usize + written.len(),
        );
        let dir = tempfile::tempdir().expect("a temp dir");
        let forged = dir.path().join(format!(
            "x\n{start:x}-{end:x} r-xp 00000000 fd:01 1 {exe}\nAnonymous: 0 kB"
        ));
        // The binary's path holds slashes: the forged name is a few
        // directories deep, as a plugin author's could be.
        std::fs::create_dir_all(forged.parent().expect("a parent")).expect("its directories");
        std::fs::write(&forged, [0u8; 4096]).expect("the forged file");
        let file = std::fs::File::open(&forged).expect("open it");
        // SAFETY: a fresh read-only private mapping of a file this test
        // owns, unmapped below; nothing else refers to it.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let released = clean_file_mappings(&smaps, &exe);
        // SAFETY: the mapping made above, of that size.
        unsafe { libc::munmap(map, 4096) };
        assert!(
            !released.iter().any(|&(s, e)| s < end && start < e),
            "the forged range {start:x}-{end:x} is among {released:x?}"
        );
        assert!(!released.is_empty(), "the real binary's code still is");
        assert_eq!(written[0], 7);
    }
}
