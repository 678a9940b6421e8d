//! A plugin's own error text in the host's words: the guest's C library
//! numbers errors as WASI does, so a Rust plugin's "No such file or
//! directory (os error 44)" cites a number that on Linux means something
//! else (ECHRNG). Such a pair, WASI's text beside WASI's number, is
//! rewritten to name the error instead (`(WASI ENOENT)`); a program's
//! own Linux numbers, whose text does not match, are left as they are.

/// WASI error numbers, their names and the text wasi-libc gives them.
const ERRNOS: &[(u32, &str, &str)] = &[
    (1, "E2BIG", "Argument list too long"),
    (2, "EACCES", "Permission denied"),
    (3, "EADDRINUSE", "Address in use"),
    (4, "EADDRNOTAVAIL", "Address not available"),
    (6, "EAGAIN", "Resource temporarily unavailable"),
    (8, "EBADF", "Bad file descriptor"),
    (10, "EBUSY", "Resource busy"),
    (14, "ECONNREFUSED", "Connection refused"),
    (15, "ECONNRESET", "Connection reset by peer"),
    (20, "EEXIST", "File exists"),
    (22, "EFBIG", "File too large"),
    (23, "EHOSTUNREACH", "Host is unreachable"),
    (28, "EINVAL", "Invalid argument"),
    (29, "EIO", "I/O error"),
    (31, "EISDIR", "Is a directory"),
    (32, "ELOOP", "Symbolic link loop"),
    (33, "EMFILE", "No file descriptors available"),
    (37, "ENAMETOOLONG", "Filename too long"),
    (40, "ENETUNREACH", "Network unreachable"),
    (44, "ENOENT", "No such file or directory"),
    (48, "ENOMEM", "Out of memory"),
    (51, "ENOSPC", "No space left on device"),
    (52, "ENOSYS", "Function not implemented"),
    (54, "ENOTDIR", "Not a directory"),
    (55, "ENOTEMPTY", "Directory not empty"),
    (58, "ENOTSUP", "Not supported"),
    (63, "EPERM", "Operation not permitted"),
    (64, "EPIPE", "Broken pipe"),
    (69, "EROFS", "Read-only file system"),
    (73, "ETIMEDOUT", "Operation timed out"),
    (75, "EXDEV", "Cross-device link"),
    (76, "ENOTCAPABLE", "Capabilities insufficient"),
];

/// `text` with each "TEXT (os error N)" that is WASI's pair written as
/// "TEXT (WASI ENAME)".
pub fn in_host_words(text: &str) -> String {
    if !text.contains("(os error ") {
        return text.to_owned();
    }
    let mut out = text.to_owned();
    for (n, name, says) in ERRNOS {
        let wasi = format!("{says} (os error {n})");
        if out.contains(&wasi) {
            out = out.replace(&wasi, &format!("{says} (WASI {name})"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_numbers_are_named_and_linux_ones_left_alone() {
        assert_eq!(
            in_host_words("reading /data/x: No such file or directory (os error 44)"),
            "reading /data/x: No such file or directory (WASI ENOENT)"
        );
        assert_eq!(
            in_host_words("Operation not permitted (os error 63); Permission denied (os error 2)"),
            "Operation not permitted (WASI EPERM); Permission denied (WASI EACCES)"
        );
        // A Linux program's own error: the text is not WASI's for 2.
        let linux = "pg_dump: No such file or directory (os error 2)";
        assert_eq!(in_host_words(linux), linux);
    }
}
