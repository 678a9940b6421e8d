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

/// The mappings of `file` in an smaps listing that are not writable and
/// hold no anonymous page, as (start, end).
fn clean_file_mappings(smaps: &str, file: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // The mapping being read: its range, whether it qualifies so far.
    let mut current: Option<(usize, usize, bool)> = None;
    let mut finish = |current: Option<(usize, usize, bool)>| {
        if let Some((start, end, true)) = current {
            out.push((start, end));
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            finish(current.take());
            let perms = fields.next().unwrap_or("");
            // offset, device, inode, then the path (which may hold spaces).
            let path = fields.skip(3).collect::<Vec<_>>().join(" ");
            let ours = path == file;
            current = Some((start, end, ours && !perms.contains('w')));
        } else if first == "Anonymous:"
            && let Some((_, _, ok)) = current.as_mut()
        {
            *ok &= fields.next() == Some("0");
        }
    }
    finish(current);
    out
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
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let (mut ours, mut kib) = (false, 0);
        for line in smaps.lines() {
            let mut fields = line.split_whitespace();
            let first = fields.next().unwrap_or("");
            if first.contains('-') && line.split_whitespace().count() >= 5 {
                ours = line.ends_with(&*exe);
            } else if first == "Rss:" && ours {
                kib += fields
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        kib
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
}
