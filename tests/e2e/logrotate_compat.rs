//! Conformance with Debian's real `logrotate`: each scenario builds the
//! same log tree, config and state twice, runs `logrotate` on one copy and
//! opsd's log-rotate plugin (reading the same config file) on the other,
//! both under libfaketime at the same forced times, and compares after
//! every step: file names, kinds, modes, owners, contents (decompressed),
//! the times kept on compressed files, the state file's entries and
//! whether the run failed.
//!
//! Setup is a small language, one item per word:
//! `NAME=SIZE[@AGE][:MODE]` writes a file of SIZE bytes (gzipped if NAME
//! ends in `.gz`) whose mtime is AGE (`-3d`, `-5h`, `-30m`) before the
//! step's time (default: one minute before); `NAME+=SIZE` appends;
//! `dir:NAME[:MODE]` makes a directory; `NAME->TARGET` a symlink;
//! `NAME=>TARGET` a hard link.

use crate::util::opsd_bin;
use chrono::{NaiveDateTime, TimeZone};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

struct Scenario {
    /// The main config; `{T}` is the log tree's absolute path.
    conf: &'static str,
    /// More config files, relative to the config directory.
    files: &'static [(&'static str, &'static str)],
    setup: &'static str,
    /// State file lines after the header; `{T}` as above.
    state: &'static str,
    /// (local time, what to write first).
    steps: &'static [(&'static str, &'static str)],
    /// The time zone of both runs (TZ for logrotate, the job's zone).
    tz: &'static str,
}

const BASE: Scenario = Scenario {
    conf: "",
    files: &[],
    setup: "",
    state: "",
    steps: &[],
    tz: "UTC",
};

macro_rules! scenario {
    ($name:ident, $($field:ident: $value:expr),* $(,)?) => {
        #[test]
        fn $name() {
            run(stringify!($name), &Scenario { $($field: $value,)* ..BASE });
        }
    };
}

const D1: &str = "2030-03-01 10:00:00";
const D2: &str = "2030-03-02 10:00:00";
const D3: &str = "2030-03-03 10:00:00";
const D4: &str = "2030-03-04 10:00:00";

// --- first run, calendar criteria -------------------------------------

scenario!(
    first_sight_is_recorded_not_rotated,
    conf: "daily\nrotate 3\n{T}/*.log {\n}\n",
    setup: "a.log=500 b.log=0",
    steps: &[("2030-03-01 10:42:17", "")],
);

scenario!(
    daily_rotates_on_a_new_day_and_keeps_rotate_generations,
    conf: "{T}/app.log {\n  daily\n  rotate 2\n}\n",
    setup: "app.log=300",
    steps: &[(D1, ""), (D2, "app.log+=100"), (D3, "app.log+=200"), (D4, "app.log+=50")],
);

scenario!(
    daily_twice_on_the_same_day_rotates_once,
    conf: "{T}/app.log {\n  daily\n  rotate 2\n}\n",
    setup: "app.log=300",
    state: "\"{T}/app.log\" 2030-2-28-9:0:0",
    steps: &[(D1, ""), ("2030-03-01 23:59:00", "app.log+=10")],
);

scenario!(
    weekly_rotates_on_sunday_or_after_seven_days,
    conf: "{T}/a.log {\n  weekly\n  rotate 5\n}\n{T}/b.log {\n  weekly 3\n  rotate 5\n}\n{T}/c.log {\n  weekly 7\n  rotate 5\n}\n",
    setup: "a.log=100 b.log=100 c.log=100",
    state: "\"{T}/a.log\" 2030-3-6-10:0:0\n\"{T}/b.log\" 2030-3-6-10:0:0\n\"{T}/c.log\" 2030-3-6-10:0:0",
    // 2030-03-06 is a Wednesday.
    steps: &[
        ("2030-03-09 10:00:00", "a.log+=1 b.log+=1 c.log+=1"),
        ("2030-03-10 10:00:00", "a.log+=1 b.log+=1 c.log+=1"),
        ("2030-03-13 10:00:00", "a.log+=1 b.log+=1 c.log+=1"),
        ("2030-03-14 10:00:00", "a.log+=1 b.log+=1 c.log+=1"),
    ],
);

scenario!(
    monthly_and_yearly_follow_the_calendar,
    conf: "rotate 4\n{T}/m.log {\n  monthly\n}\n{T}/y.log {\n  yearly\n}\n",
    setup: "m.log=100 y.log=100",
    state: "\"{T}/m.log\" 2030-3-1-0:0:0\n\"{T}/y.log\" 2030-3-1-0:0:0",
    steps: &[
        ("2030-03-31 23:00:00", "m.log+=1 y.log+=1"),
        ("2030-04-01 00:10:00", "m.log+=1 y.log+=1"),
        ("2031-01-01 00:10:00", "m.log+=1 y.log+=1"),
    ],
);

scenario!(
    hourly_with_dateext_names_by_hour,
    conf: "{T}/h.log {\n  hourly\n  dateext\n  rotate 2\n}\n",
    setup: "h.log=100",
    state: "\"{T}/h.log\" 2030-3-1-9:0:0",
    steps: &[
        (D1, ""),
        ("2030-03-01 10:30:00", "h.log+=5"),
        ("2030-03-01 11:05:00", "h.log+=5"),
        ("2030-03-01 12:05:00", "h.log+=5"),
    ],
);

scenario!(
    a_state_time_in_the_future_forces_rotation,
    conf: "{T}/f.log {\n  daily\n  rotate 1\n}\n",
    setup: "f.log=100",
    state: "\"{T}/f.log\" 2031-6-1-0:0:0",
    steps: &[(D1, "")],
);

// --- size criteria ----------------------------------------------------

scenario!(
    size_rotates_at_or_above_the_threshold,
    conf: "{T}/*.log {\n  size 100\n  rotate 1\n}\n",
    setup: "small.log=99 exact.log=100 big.log=101",
    steps: &[(D1, "")],
);

scenario!(
    size_with_suffixes_and_the_default_one_mebibyte,
    conf: "{T}/k.log {\n  size 1k\n}\n{T}/default.log {\n}\n",
    setup: "k.log=1024 default.log=1048575",
    steps: &[(D1, ""), (D2, "default.log+=1 k.log+=1")],
);

scenario!(
    minsize_holds_back_a_due_but_small_log,
    conf: "{T}/*.log {\n  daily\n  minsize 200\n  rotate 2\n}\n",
    setup: "small.log=100 big.log=300",
    state: "\"{T}/small.log\" 2030-2-27-0:0:0\n\"{T}/big.log\" 2030-2-27-0:0:0",
    steps: &[(D1, "")],
);

scenario!(
    maxsize_rotates_before_the_week_is_over,
    conf: "{T}/*.log {\n  weekly\n  maxsize 200\n  rotate 2\n}\n",
    setup: "small.log=100 big.log=300",
    state: "\"{T}/small.log\" 2030-2-28-0:0:0\n\"{T}/big.log\" 2030-2-28-0:0:0",
    steps: &[(D1, "")],
);

// --- how many are kept ------------------------------------------------

scenario!(
    rotate_zero_keeps_no_generation,
    conf: "{T}/z.log {\n  daily\n  rotate 0\n  create\n}\n",
    setup: "z.log=100 z.log.1=50",
    state: "\"{T}/z.log\" 2030-2-28-0:0:0",
    steps: &[(D1, ""), (D2, "z.log+=10")],
);

scenario!(
    rotate_minus_one_keeps_every_generation,
    conf: "{T}/all.log {\n  daily\n  rotate -1\n}\n",
    setup: "all.log=100 all.log.1=10 all.log.2=20 all.log.3=30 all.log.7=70",
    state: "\"{T}/all.log\" 2030-2-28-0:0:0",
    steps: &[(D1, ""), (D2, "all.log+=10")],
);

scenario!(
    start_numbers_generations_from_zero,
    conf: "{T}/s.log {\n  daily\n  rotate 2\n  start 0\n}\n",
    setup: "s.log=100",
    state: "\"{T}/s.log\" 2030-2-28-0:0:0",
    steps: &[(D1, ""), (D2, "s.log+=10"), (D3, "s.log+=20")],
);

scenario!(
    maxage_removes_old_generations_while_shifting,
    conf: "{T}/old.log {\n  daily\n  rotate 5\n  maxage 10\n}\n",
    setup: "old.log=100 old.log.1=10@-2d old.log.2=20@-12d old.log.3=30@-30d",
    state: "\"{T}/old.log\" 2030-2-28-0:0:0",
    steps: &[(D1, "")],
);

scenario!(
    minage_holds_back_a_young_log,
    conf: "{T}/*.log {\n  daily\n  minage 5\n  rotate 2\n}\n",
    setup: "young.log=100@-2d aged.log=100@-10d",
    state: "\"{T}/young.log\" 2030-2-20-0:0:0\n\"{T}/aged.log\" 2030-2-20-0:0:0",
    steps: &[(D1, "")],
);

// --- compression ------------------------------------------------------

scenario!(
    compress_gzips_every_generation,
    conf: "compress\n{T}/c.log {\n  daily\n  rotate 3\n}\n",
    setup: "c.log=5000@-3h:0640",
    state: "\"{T}/c.log\" 2030-2-28-0:0:0",
    steps: &[(D1, ""), (D2, "c.log+=3000"), (D3, "c.log+=1000"), (D4, "c.log+=10")],
);

scenario!(
    delaycompress_leaves_the_newest_plain,
    conf: "{T}/d.log {\n  daily\n  rotate 3\n  compress\n  delaycompress\n}\n",
    setup: "d.log=4000",
    state: "\"{T}/d.log\" 2030-2-28-0:0:0",
    steps: &[(D1, ""), (D2, "d.log+=3000"), (D3, "d.log+=1000"), (D4, "d.log+=10")],
);

scenario!(
    compressoptions_pick_the_gzip_level,
    conf: "{T}/l.log {\n  daily\n  rotate 2\n  compress\n  compressoptions -9\n}\n",
    setup: "l.log=20000",
    state: "\"{T}/l.log\" 2030-2-28-0:0:0",
    steps: &[(D1, "")],
);

scenario!(
    a_leftover_compressed_file_is_moved_aside_not_overwritten,
    conf: "{T}/x.log {\n  daily\n  rotate 3\n  compress\n  delaycompress\n}\n",
    setup: "x.log=100 x.log.1=50 x.log.1.gz=70",
    state: "\"{T}/x.log\" 2030-2-28-0:0:0",
    steps: &[(D1, "")],
);

// --- copy, create -----------------------------------------------------

scenario!(
    copytruncate_keeps_the_log_in_place,
    conf: "{T}/ct.log {\n  daily\n  rotate 2\n  copytruncate\n  compress\n}\n",
    setup: "ct.log=800:0604",
    state: "\"{T}/ct.log\" 2030-2-28-0:0:0",
    steps: &[(D1, ""), (D2, "ct.log+=300")],
);

scenario!(
    copytruncate_with_rotate_zero_only_truncates,
    conf: "{T}/ct.log {\n  daily\n  rotate 0\n  copytruncate\n}\n",
    setup: "ct.log=800",
    state: "\"{T}/ct.log\" 2030-2-28-0:0:0",
    steps: &[(D1, "")],
);

scenario!(
    copy_leaves_the_log_untouched,
    conf: "{T}/cp.log {\n  daily\n  rotate 2\n  copy\n}\n",
    setup: "cp.log=800",
    state: "\"{T}/cp.log\" 2030-2-28-0:0:0",
    steps: &[(D1, ""), (D2, "cp.log+=300")],
);

scenario!(
    create_sets_mode_owner_and_group,
    conf: "{T}/cr.log {\n  daily\n  rotate 2\n  create 0600 nobody nogroup\n}\n",
    setup: "cr.log=100:0644",
    state: "\"{T}/cr.log\" 2030-2-28-0:0:0",
    steps: &[(D1, "")],
);

scenario!(
    create_without_arguments_copies_the_old_mode,
    conf: "create\n{T}/*.log {\n  daily\n  rotate 2\n}\n",
    setup: "a.log=100:0640 b.log=100:0604",
    state: "\"{T}/a.log\" 2030-2-28-0:0:0\n\"{T}/b.log\" 2030-2-28-0:0:0",
    steps: &[(D1, "")],
);

// --- dateext ----------------------------------------------------------

scenario!(
    dateext_names_by_date_and_prunes_the_oldest,
    conf: "{T}/de.log {\n  daily\n  rotate 2\n  dateext\n}\n",
    setup: "de.log=100",
    state: "\"{T}/de.log\" 2030-2-28-0:0:0",
    steps: &[(D1, ""), (D2, "de.log+=10"), (D3, "de.log+=20"), (D4, "de.log+=30")],
);

scenario!(
    dateformat_and_dateyesterday,
    conf: "{T}/dy.log {\n  daily\n  rotate 3\n  dateext\n  dateformat .%Y-%m-%d\n  dateyesterday\n  compress\n}\n",
    setup: "dy.log=100",
    state: "\"{T}/dy.log\" 2030-2-27-0:0:0",
    steps: &[(D1, ""), (D2, "dy.log+=10"), (D3, "dy.log+=20")],
);

scenario!(
    dateext_with_delaycompress,
    conf: "{T}/dd.log {\n  daily\n  rotate 2\n  dateext\n  compress\n  delaycompress\n}\n",
    setup: "dd.log=1000",
    state: "\"{T}/dd.log\" 2030-2-28-0:0:0",
    steps: &[(D1, ""), (D2, "dd.log+=10"), (D3, "dd.log+=20"), (D4, "dd.log+=30")],
);

scenario!(
    dateext_refuses_to_overwrite_todays_rotation,
    conf: "{T}/twice.log {\n  size 1\n  rotate 3\n  dateext\n}\n",
    setup: "twice.log=100",
    steps: &[(D1, ""), ("2030-03-01 18:00:00", "twice.log+=10")],
);

scenario!(
    dateext_maxage_and_a_custom_format_sorted_by_date,
    conf: "{T}/ma.log {\n  daily\n  rotate 3\n  maxage 5\n  dateext\n  dateformat -%d.%m.%Y\n}\n",
    setup: "ma.log=100 ma.log-20.02.2030=10@-9d ma.log-27.02.2030=10@-2d ma.log-25.12.2029=10@-66d ma.log-28.02.2030=10@-1d",
    state: "\"{T}/ma.log\" 2030-2-28-0:0:0",
    steps: &[(D1, "")],
);

// --- names and places -------------------------------------------------

scenario!(
    extension_keeps_the_suffix_last,
    conf: "{T}/web.log {\n  daily\n  rotate 2\n  extension .log\n  compress\n}\n",
    setup: "web.log=500",
    state: "\"{T}/web.log\" 2030-2-28-0:0:0",
    steps: &[(D1, ""), (D2, "web.log+=50")],
);

scenario!(
    olddir_relative_to_the_log,
    conf: "{T}/o.log {\n  daily\n  rotate 2\n  olddir archive\n  compress\n}\n",
    setup: "o.log=500 dir:archive:0750",
    state: "\"{T}/o.log\" 2030-2-28-0:0:0",
    steps: &[(D1, ""), (D2, "o.log+=50")],
);

scenario!(
    olddir_absolute_is_created_by_createolddir,
    conf: "{T}/sub/oa.log {\n  daily\n  rotate 2\n  olddir {T}/old/sub\n  createolddir 0750 root root\n}\n",
    setup: "dir:sub oa.log=1 sub/oa.log=500",
    state: "\"{T}/sub/oa.log\" 2030-2-28-0:0:0",
    steps: &[(D1, "")],
);

// --- which files ------------------------------------------------------

scenario!(
    missingok_and_a_missing_log_without_it,
    conf: "{T}/gone.log {\n  daily\n  missingok\n}\n{T}/*.nomatch {\n  daily\n  missingok\n}\n{T}/needed.log {\n  size 1\n}\n{T}/here.log {\n  size 1\n}\n",
    setup: "here.log=10",
    steps: &[(D1, "")],
);

scenario!(
    notifempty_skips_empty_logs_ifempty_does_not,
    conf: "{T}/n*.log {\n  size 0\n  notifempty\n}\n{T}/i*.log {\n  size 0\n  ifempty\n}\n",
    setup: "n-empty.log=0 n-full.log=10 i-empty.log=0",
    steps: &[(D1, "")],
);

scenario!(
    symlinks_and_hard_links_are_not_rotated_without_allowhardlink,
    conf: "{T}/*.log {\n  size 1\n}\n{T}/hard/*.log {\n  size 1\n  allowhardlink\n}\n",
    setup: "real.log=10 link.log->real.log shared.log=10 twin.log=>shared.log dir:hard hard/a.log=10 hard/b.log=>hard/a.log",
    steps: &[(D1, "")],
);

scenario!(
    quoted_names_and_several_patterns,
    conf: "\"{T}/my app.log\" {T}/sub/*.log\n{T}/x.log {\n  size 1\n  rotate 1\n}\n",
        setup: "my_app.log=0 dir:sub sub/a.log=10 sub/b.txt=10 x.log=10",
    steps: &[(D1, "my_app.log+=10")],
);

scenario!(
    include_a_directory_skips_taboo_files_and_keeps_defaults,
    conf: "rotate 2\ncompress\ninclude {C}/conf.d\n{T}/main.log {\n  size 1\n}\n",
    files: &[
        ("conf.d/app", "{T}/app.log {\n  size 1\n}\n"),
        ("conf.d/web", "nocompress\n{T}/web.log {\n  size 1\n}\n"),
        ("conf.d/old.dpkg-old", "{T}/old.log {\n  size 1\n}\n"),
    ],
    setup: "main.log=10 app.log=10 web.log=10 old.log=10",
    steps: &[(D1, ""), (D2, "main.log+=5 app.log+=5 web.log+=5")],
);

scenario!(
    a_broken_stanza_is_skipped_and_the_rest_rotated,
    conf: "{T}/bad.log {\n  rotate lots\n  size 1\n}\n{T}/good.log {\n  size 1\n  frobnicate\n}\n",
    setup: "bad.log=10 good.log=10",
    steps: &[(D1, "")],
);

scenario!(
    group_writable_directories_need_su,
    conf: "{T}/open/*.log {\n  size 1\n}\n{T}/shared/*.log {\n  size 1\n  su root root\n}\n",
    setup: "dir:open:0777 open/a.log=10 dir:shared:0777 shared/b.log=10",
    steps: &[(D1, "")],
);

// --- scripts ----------------------------------------------------------

scenario!(
    prerotate_and_postrotate_run_per_log_with_arguments,
    conf: "{T}/*.log {\n  daily\n  rotate 1\n  prerotate\n    echo \"pre $1\" >> {T}/scripts.out\n  endscript\n  postrotate\n    echo \"post $1 $2\" >> {T}/scripts.out\n  endscript\n}\n",
    setup: "a.log=10 b.log=10",
    state: "\"{T}/a.log\" 2030-2-28-0:0:0\n\"{T}/b.log\" 2030-2-28-0:0:0",
    steps: &[(D1, ""), ("2030-03-01 12:00:00", "a.log+=1")],
);

scenario!(
    sharedscripts_run_once_with_first_and_last_actions,
    conf: "{T}/*.log {\n  daily\n  rotate 1\n  sharedscripts\n  firstaction\n    echo first >> {T}/scripts.out\n  endscript\n  prerotate\n    echo pre >> {T}/scripts.out\n  endscript\n  postrotate\n    echo post >> {T}/scripts.out\n  endscript\n  lastaction\n    echo last >> {T}/scripts.out\n  endscript\n}\n",
    setup: "a.log=10 b.log=10 c.log=0",
    state: "\"{T}/a.log\" 2030-2-28-0:0:0\n\"{T}/b.log\" 2030-2-28-0:0:0",
    steps: &[(D1, "")],
);

scenario!(
    a_failing_prerotate_stops_that_log,
    conf: "{T}/*.log {\n  size 1\n  rotate 1\n  prerotate\n    test \"$1\" != {T}/b.log\n  endscript\n}\n",
    setup: "a.log=10 b.log=10 c.log=10",
    steps: &[(D1, "")],
);

// --- time zone --------------------------------------------------------

scenario!(
    days_turn_at_local_midnight,
    conf: "{T}/tz.log {\n  daily\n  rotate 3\n  dateext\n}\n",
    setup: "tz.log=100",
    state: "\"{T}/tz.log\" 2030-3-1-9:0:0",
    steps: &[
        ("2030-03-01 23:30:00", "tz.log+=1"),
        ("2030-03-02 00:30:00", "tz.log+=1"),
    ],
    tz: "Asia/Kolkata",
);

// --- daylight saving time and calendar ends ----------------------------
//
// logrotate reads every time through localtime() and mktime() with the
// zone's rules, so the job's zone, not one offset, decides. A step may
// name its UTC offset (`2030-10-27 02:30:00 +01:00`) where the local time
// is repeated. The comments say what real logrotate does where it is odd;
// opsd matches it.

scenario!(
    weekly_across_a_spring_forward_night,
    // logrotate counts days between local midnights taken with the *now*
    // and *last* DST flags (mktimeFromDateOnly), truncating: across the
    // spring-forward night a calendar week is 6 days and 23 hours, so 6.
    // s.log (Sunday) was rotated Saturday: on Sunday 03-31 logrotate sees
    // 0 days and does not rotate; it waits until 04-07. f.log (Friday)
    // was rotated Wednesday 03-27: not on Wednesday 04-03 (6 days), but
    // on Thursday 04-04 (7). w.log (Wednesday) rotates on 04-03 by its
    // weekday.
    conf: "rotate 5\n{T}/s.log {\n  weekly\n}\n{T}/w.log {\n  weekly 3\n}\n{T}/f.log {\n  weekly 5\n}\n",
    setup: "s.log=100 w.log=100 f.log=100",
    state: "\"{T}/s.log\" 2030-3-30-10:0:0\n\"{T}/w.log\" 2030-3-27-10:0:0\n\"{T}/f.log\" 2030-3-27-10:0:0",
    steps: &[
        ("2030-03-31 10:00:00", "s.log+=1 w.log+=1 f.log+=1"),
        ("2030-04-03 10:00:00", "s.log+=1 w.log+=1 f.log+=1"),
        ("2030-04-04 10:00:00", "s.log+=1 w.log+=1 f.log+=1"),
        ("2030-04-07 10:00:00", "s.log+=1 w.log+=1 f.log+=1"),
    ],
    tz: "Europe/Berlin",
);

scenario!(
    weekly_on_the_sunday_clocks_go_forward_in_new_york,
    // n.log, rotated the Saturday before, is not rotated that Sunday (0
    // days by logrotate's count) nor on Monday (1 day, not its weekday);
    // m.log, rotated the Sunday before at noon, is (6 days, and Sunday).
    conf: "rotate 5\n{T}/*.log {\n  weekly\n}\n",
    setup: "n.log=100 m.log=100",
    state: "\"{T}/n.log\" 2030-3-9-10:0:0\n\"{T}/m.log\" 2030-3-3-12:0:0",
    steps: &[
        ("2030-03-10 10:00:00", "n.log+=1 m.log+=1"),
        ("2030-03-11 10:00:00", "n.log+=1 m.log+=1"),
    ],
    tz: "America/New_York",
);

scenario!(
    hourly_through_the_repeated_hour,
    // h.log rotates at 01:10 EDT; at 01:40 EST its hour is 1 again, so
    // logrotate (comparing local fields) waits for 02:05. b.log rotates by
    // size with datehourago: logrotate takes one off tm_hour and calls
    // mktime with the EST flag, so at 01:40 EST "an hour ago" is 00:40
    // EST, which is 01:40 EDT: the name says hour 01, not 00.
    conf: "{T}/h.log {\n  hourly\n  dateext\n  rotate 4\n}\n{T}/b.log {\n  size 1\n  dateext\n  dateformat -%Y%m%d%H\n  datehourago\n  rotate 4\n}\n",
    setup: "h.log=100 b.log=0",
    state: "\"{T}/h.log\" 2030-11-3-0:10:0\n\"{T}/b.log\" 2030-11-3-0:0:0",
    steps: &[
        ("2030-11-03 01:10:00 -04:00", "h.log+=5"),
        ("2030-11-03 01:40:00 -05:00", "h.log+=5 b.log+=10"),
        ("2030-11-03 02:05:00 -05:00", "h.log+=5 b.log+=10"),
    ],
    tz: "America/New_York",
);

scenario!(
    dateext_hour_names_in_the_repeated_hour,
    // The second rotation in the repeated hour wants the name the first
    // took: logrotate refuses to overwrite it and the run fails.
    conf: "{T}/r.log {\n  size 1\n  dateext\n  dateformat -%Y%m%d%H\n  rotate 4\n}\n",
    setup: "r.log=100",
    steps: &[
        ("2030-10-27 02:20:00 +02:00", ""),
        ("2030-10-27 02:50:00 +01:00", "r.log+=5"),
        ("2030-10-27 03:10:00 +01:00", "r.log+=5"),
    ],
    tz: "Europe/Berlin",
);

scenario!(
    hour_ago_and_yesterday_names_on_a_spring_forward_morning,
    // g.log: at 03:30 CEST "an hour ago" is 02:30 with the DST flag, which
    // mktime reads as 01:30 CET: hour 01. y.log: yesterday is taken at
    // noon with today's DST flag, and 12:30 CEST on the Saturday is 11:30
    // CET: hour 11.
    conf: "{T}/g.log {\n  hourly\n  dateext\n  datehourago\n  rotate 4\n}\n{T}/y.log {\n  daily\n  dateext\n  dateyesterday\n  dateformat -%Y%m%d%H\n  rotate 4\n}\n",
    setup: "g.log=100 y.log=100",
    state: "\"{T}/g.log\" 2030-3-31-1:0:0\n\"{T}/y.log\" 2030-3-30-9:0:0",
    steps: &[("2030-03-31 03:30:00", "g.log+=1 y.log+=1")],
    tz: "Europe/Berlin",
);

scenario!(
    hour_ago_and_yesterday_names_on_a_fall_back_night,
    // At 02:30 CET (the second 02:30) "an hour ago" is 01:30 CET, which
    // localtime shows as 02:30 CEST: hour 02. Yesterday at noon with the
    // CET flag is 13:30 CEST: hour 13.
    conf: "{T}/g.log {\n  hourly\n  dateext\n  datehourago\n  rotate 4\n}\n{T}/y.log {\n  daily\n  dateext\n  dateyesterday\n  dateformat -%Y%m%d%H\n  rotate 4\n}\n",
    setup: "g.log=100 y.log=100",
    state: "\"{T}/g.log\" 2030-10-27-0:0:0\n\"{T}/y.log\" 2030-10-26-9:0:0",
    steps: &[("2030-10-27 02:30:00 +01:00", "g.log+=1 y.log+=1")],
    tz: "Europe/Berlin",
);

scenario!(
    first_sight_when_lord_howe_moves_forward_half_an_hour,
    // A log logrotate has not seen is recorded at the start of the hour
    // with the current DST flag: 02:00 with DST does not exist on this
    // morning (02:00 -> 02:30) and mktime makes it 01:30 standard time.
    // So the hourly log is rotated at first sight (hour 1 is not hour 2),
    // and both are recorded at 1:30.
    conf: "rotate 4\n{T}/h.log {\n  hourly\n}\n{T}/d.log {\n  daily\n}\n",
    setup: "h.log=100 d.log=100",
    steps: &[("2030-10-06 02:45:00 +11:00", "")],
    tz: "Australia/Lord_Howe",
);

scenario!(
    first_sight_when_lord_howe_moves_back_half_an_hour,
    // In the repeated half hour (01:30-02:00 comes twice) the start of the
    // hour with the standard-time flag, 01:00 +10:30, is 01:30 +11:00, so
    // logrotate records 1:30, not 1:00.
    conf: "rotate 4\n{T}/h.log {\n  hourly\n}\n{T}/d.log {\n  daily\n}\n",
    setup: "h.log=100 d.log=100",
    steps: &[
        ("2030-04-07 01:45:00 +10:30", ""),
        ("2030-04-07 02:10:00 +10:30", "h.log+=1 d.log+=1"),
    ],
    tz: "Australia/Lord_Howe",
);

scenario!(
    state_times_that_do_not_exist_are_read_as_mktime_reads_them,
    // 02:30 on the spring-forward morning does not exist; logrotate's
    // mktime (DST unknown) makes it 03:30 CEST, and writes that back.
    // n.log's 02:30 on another Sunday exists and stays.
    conf: "rotate 4\n{T}/*.log {\n  monthly\n}\n",
    setup: "g.log=100 n.log=100",
    state: "\"{T}/g.log\" 2030-3-31-2:30:0\n\"{T}/n.log\" 2030-3-10-2:30:0",
    steps: &[("2030-03-31 12:00:00", "g.log+=1 n.log+=1")],
    tz: "Europe/Berlin",
);

scenario!(
    the_future_is_counted_in_real_hours_across_fall_back,
    // "Last rotated in the future" means over 25 real hours ahead. Across
    // the fall-back night 10:30 the next day is 25.5 hours ahead though
    // the clock says 24.5: m.log's rotation is forced. n.log (24.5 real
    // hours) is not, and monthly does not rotate in the same month.
    conf: "rotate 4\n{T}/*.log {\n  monthly\n}\n",
    setup: "m.log=100 n.log=100",
    state: "\"{T}/m.log\" 2030-10-27-10:30:0\n\"{T}/n.log\" 2030-10-27-9:30:0",
    steps: &[("2030-10-26 10:00:00", "")],
    tz: "Europe/Berlin",
);

scenario!(
    a_repeated_state_time_is_read_with_the_offset_of_now,
    // 02:30 on the fall-back night comes twice. logrotate's mktime picks
    // by its guess, which is the offset its previous call found: the one
    // that recorded the log at now's hour (newState, called for each line
    // before its time is read). At 01:45 CEST the line reads as 02:30
    // CEST, 24.75 hours ahead: not "in the future" (as 02:30 CET, 25.75
    // hours, would be), so the monthly log is not rotated.
    conf: "rotate 4\n{T}/*.log {\n  monthly\n}\n",
    setup: "r.log=100",
    state: "\"{T}/r.log\" 2030-10-27-2:30:0",
    steps: &[("2030-10-26 01:45:00", "")],
    tz: "Europe/Berlin",
);

scenario!(
    month_and_year_ends_in_new_york,
    conf: "rotate 4\n{T}/m.log {\n  monthly\n  dateext\n}\n{T}/y.log {\n  yearly\n  dateext\n}\n{T}/d.log {\n  daily\n  dateext\n}\n",
    setup: "m.log=100 y.log=100 d.log=100",
    state: "\"{T}/m.log\" 2030-12-1-0:0:0\n\"{T}/y.log\" 2030-1-1-0:0:0\n\"{T}/d.log\" 2030-12-31-0:5:0",
    steps: &[
        ("2030-12-31 23:30:00", "m.log+=1 y.log+=1 d.log+=1"),
        ("2031-01-01 00:10:00", "m.log+=1 y.log+=1 d.log+=1"),
        ("2031-02-01 00:00:00", "m.log+=1 y.log+=1 d.log+=1"),
    ],
    tz: "America/New_York",
);

scenario!(
    month_and_year_ends_in_summer_time_at_lord_howe,
    conf: "rotate 4\n{T}/m.log {\n  monthly\n  dateext\n}\n{T}/y.log {\n  yearly\n  dateext\n  dateformat -%Y%m%d%H%M\n}\n",
    setup: "m.log=100 y.log=100",
    state: "\"{T}/m.log\" 2030-12-1-0:0:0\n\"{T}/y.log\" 2030-1-1-0:0:0",
    steps: &[
        ("2030-12-31 23:50:00", "m.log+=1 y.log+=1"),
        ("2031-01-01 00:05:00", "m.log+=1 y.log+=1"),
    ],
    tz: "Australia/Lord_Howe",
);

scenario!(
    maxage_counts_real_days_across_a_dst_night,
    // Ages are seconds between now and the mtime, so 25 hours across the
    // spring-forward night is over a day, and 23 hours is not.
    conf: "{T}/old.log {\n  daily\n  rotate 5\n  maxage 1\n}\n{T}/dx.log {\n  daily\n  rotate 5\n  maxage 1\n  dateext\n}\n",
    setup: "old.log=100 old.log.1=10@-25h old.log.2=20@-23h dx.log=100 dx.log-20300329=10@-49h dx.log-20300330=10@-23h",
    state: "\"{T}/old.log\" 2030-3-30-12:0:0\n\"{T}/dx.log\" 2030-3-30-12:0:0",
    steps: &[("2030-03-31 12:00:00", "old.log+=1 dx.log+=1")],
    tz: "Europe/Berlin",
);

// --- the harness ------------------------------------------------------

/// One file as the comparison sees it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Decompressed for `.gz` files.
    content: Vec<u8>,
    /// Kept for compressed files, whose times come from the log.
    mtime: Option<i64>,
}

/// After one step: the tree, the state entries, whether the run failed,
/// and the tool's output for the report.
struct After {
    tree: BTreeMap<String, Seen>,
    state: BTreeMap<String, String>,
    failed: bool,
    output: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Logrotate,
    Opsd,
}

/// A step's time: local time in `tz`, or with its UTC offset after it
/// (`2030-10-27 02:30:00 +01:00`) where the local time comes twice.
fn instant(local: &str, tz: &str) -> SystemTime {
    let secs = match chrono::DateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S %:z") {
        Ok(t) => t.timestamp(),
        Err(_) => {
            let zone: chrono_tz::Tz = tz.parse().expect("zone");
            let naive =
                NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S").expect("step time");
            zone.from_local_datetime(&naive)
                .single()
                .expect("unambiguous step time (give its offset)")
                .timestamp()
        }
    };
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
}

fn content(name: &str, size: usize, salt: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    let mut i = 0;
    while out.len() < size {
        out.extend_from_slice(format!("{name} line {} {salt}\n", i).as_bytes());
        i += 1;
    }
    out.truncate(size);
    out
}

fn age(spec: &str) -> Duration {
    let spec = spec.trim_start_matches('-');
    let (n, unit) = spec.split_at(spec.len() - 1);
    let n: u64 = n.parse().expect("age number");
    Duration::from_secs(match unit {
        "d" => n * 86_400,
        "h" => n * 3600,
        "m" => n * 60,
        _ => panic!("age unit in {spec}"),
    })
}

fn set_mtime(path: &Path, t: SystemTime) {
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open for times");
    f.set_times(std::fs::FileTimes::new().set_accessed(t).set_modified(t))
        .expect("set times");
}

/// Applies setup words to the tree, at step time `now`.
fn apply(tree: &Path, words: &str, now: SystemTime, salt: usize) {
    for word in words.split_whitespace() {
        if let Some(spec) = word.strip_prefix("dir:") {
            let (name, mode) = spec.split_once(':').unwrap_or((spec, "755"));
            let p = tree.join(name);
            std::fs::create_dir_all(&p).expect("mkdir");
            std::fs::set_permissions(
                &p,
                std::fs::Permissions::from_mode(u32::from_str_radix(mode, 8).expect("mode")),
            )
            .expect("chmod dir");
        } else if let Some((link, target)) = word.split_once("->") {
            std::os::unix::fs::symlink(target, tree.join(link)).expect("symlink");
        } else if let Some((link, target)) = word.split_once("=>") {
            std::fs::hard_link(tree.join(target), tree.join(link)).expect("hard link");
        } else if let Some((name, size)) = word.split_once("+=") {
            let name = name.replace('_', " ");
            let p = tree.join(&name);
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .expect("append");
            f.write_all(&content(&name, size.parse().expect("size"), salt))
                .expect("append");
            drop(f);
            set_mtime(&p, now - Duration::from_secs(60));
        } else if let Some((name, rest)) = word.split_once('=') {
            let name = name.replace('_', " ");
            let (rest, mode) = match rest.split_once(':') {
                Some((r, m)) => (r, Some(u32::from_str_radix(m, 8).expect("mode"))),
                None => (rest, None),
            };
            let (size, when) = match rest.split_once('@') {
                Some((s, a)) => (s, now - age(a)),
                None => (rest, now - Duration::from_secs(60)),
            };
            let data = content(&name, size.parse().expect("size"), salt);
            let p = tree.join(&name);
            if name.ends_with(".gz") {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(&data).expect("gzip");
                std::fs::write(&p, enc.finish().expect("gzip")).expect("write");
            } else {
                std::fs::write(&p, data).expect("write");
            }
            if let Some(m) = mode {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).expect("chmod");
            }
            set_mtime(&p, when);
        } else {
            panic!("setup word `{word}`");
        }
    }
}

fn snapshot(tree: &Path) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read tree") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path
                .strip_prefix(tree)
                .expect("inside tree")
                .to_string_lossy()
                .into_owned();
            let m = std::fs::symlink_metadata(&path).expect("lstat");
            let ft = m.file_type();
            let (kind, content, mtime) = if ft.is_symlink() {
                let target = std::fs::read_link(&path).expect("readlink");
                (
                    "symlink",
                    target.to_string_lossy().as_bytes().to_vec(),
                    None,
                )
            } else if ft.is_dir() {
                stack.push(path.clone());
                ("dir", Vec::new(), None)
            } else {
                let raw = std::fs::read(&path).expect("read file");
                if rel.ends_with(".gz") {
                    let mut plain = Vec::new();
                    match flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut plain) {
                        Ok(_) => ("gzip", plain, Some(m.mtime())),
                        Err(_) => ("file", raw, None),
                    }
                } else {
                    ("file", raw, None)
                }
            };
            out.insert(
                rel,
                Seen {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    content,
                    mtime,
                },
            );
        }
    }
    out
}

fn read_state(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let (p, t) = l.rsplit_once(' ')?;
            Some((p.to_owned(), t.to_owned()))
        })
        .collect()
}

/// Debian's libfaketime (package faketime), which pins the wall clock.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn require_tools() {
    for (tool, pkg) in [
        ("/usr/sbin/logrotate", "logrotate"),
        (LIBFAKETIME, "faketime"),
    ] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: install the `{pkg}` package (tests/run does)"
        );
    }
}

fn run_tool(tool: Tool, root: &Path, at: &str, tz: &str) -> (bool, String) {
    // A frozen wall clock (`-f` with an absolute time) so both tools see
    // the same second however long they take; real file times (no stat
    // faking) and a real monotonic clock (the daemon's timers).
    // The instant as seconds since the epoch (FAKETIME_FMT=%s): the local
    // time alone is ambiguous in a repeated hour.
    let secs = instant(at, tz)
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .to_string();
    // libfaketime preloaded, not the `faketime` wrapper: the wrapper names
    // a semaphore after its pid and fails ("sem_open: File exists") when
    // one left by an earlier process of the same pid is still there.
    let program = match tool {
        Tool::Logrotate => "/usr/sbin/logrotate",
        Tool::Opsd => opsd_bin(),
    };
    let mut cmd = Command::new(program);
    cmd.env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME", &secs)
        .env("FAKETIME_FMT", "%s")
        .env("TZ", tz)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("NO_FAKE_STAT", "1");
    match tool {
        Tool::Logrotate => {
            cmd.arg("-s")
                .arg(root.join("state/status"))
                .arg(root.join("conf/main.conf"));
        }
        Tool::Opsd => {
            cmd.arg("--config")
                .arg(root.join("opsd/opsd.toml"))
                .args(["run", "lr", "--json"])
                .env_remove("OPSD_CONFIG")
                .env_remove("RUST_LOG");
        }
    }
    let out = cmd.output().expect("run under libfaketime");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let failed = match tool {
        Tool::Logrotate => !out.status.success(),
        Tool::Opsd => {
            let rec: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("opsd run: not JSON ({e}): {text}"));
            rec["status"] == "failed"
        }
    };
    (failed, text)
}

fn prepare(root: &Path, s: &Scenario, tool: Tool) -> std::path::PathBuf {
    let tree = root.join("t");
    let conf = root.join("conf");
    let state = root.join("state");
    for d in [&tree, &conf, &state] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).expect("mkdir");
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let fill = |text: &str| {
        text.replace("{T}", tree.to_str().expect("utf-8 path"))
            .replace("{C}", conf.to_str().expect("utf-8 path"))
    };
    let mut confs = vec![("main.conf", s.conf)];
    confs.extend_from_slice(s.files);
    for (name, text) in confs {
        let p = conf.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir conf");
        }
        std::fs::write(&p, fill(text)).expect("write conf");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    if !s.state.is_empty() {
        std::fs::write(
            state.join("status"),
            format!("logrotate state -- version 2\n{}\n", fill(s.state)),
        )
        .expect("write state");
    }
    if tool == Tool::Opsd {
        let dir = root.join("opsd");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir opsd");
        let grant = |p: &Path, access: &str| {
            format!(
                "{{ host = \"{0}\", guest = \"{0}\", access = \"{access}\" }}",
                p.display()
            )
        };
        std::fs::write(
            dir.join("opsd.toml"),
            format!(
                "data_dir = \"data\"\nplugin_dir = \"plugins\"\n\n[[job]]\nname = \"lr\"\nplugin = \"log-rotate\"\nschedule = \"@daily\"\ntimezone = \"{}\"\n[job.grants]\nfs = [{}, {}, {}]\nexec = [\"sh\"]\n[job.config]\nlogrotate_conf = \"{}\"\nstate_file = \"{}\"\n",
                s.tz,
                grant(&tree, "rw"),
                grant(&conf, "ro"),
                grant(&state, "rw"),
                conf.join("main.conf").display(),
                state.join("status").display(),
            ),
        )
        .expect("write opsd.toml");
    }
    tree
}

fn run(name: &str, s: &Scenario) {
    require_tools();
    let root = tempfile::Builder::new()
        .prefix("opsd-lr-")
        .tempdir()
        .expect("tempdir");
    let first = instant(s.steps[0].0, s.tz);
    let mut results: Vec<Vec<After>> = Vec::new();
    for tool in [Tool::Logrotate, Tool::Opsd] {
        let tree = prepare(root.path(), s, tool);
        apply(&tree, s.setup, first, 0);
        let mut afters = Vec::new();
        for (n, (at, writes)) in s.steps.iter().enumerate() {
            apply(&tree, writes, instant(at, s.tz), n + 1);
            let (failed, output) = run_tool(tool, root.path(), at, s.tz);
            afters.push(After {
                tree: snapshot(&tree),
                state: read_state(&root.path().join("state/status")),
                failed,
                output,
            });
        }
        results.push(afters);
    }
    let tree = root.path().join("t");
    let tree = tree.to_string_lossy();
    for (n, (lr, opsd)) in results[0].iter().zip(&results[1]).enumerate() {
        let mut diffs = Vec::new();
        let names: std::collections::BTreeSet<&String> =
            lr.tree.keys().chain(opsd.tree.keys()).collect();
        for name in names {
            match (lr.tree.get(name), opsd.tree.get(name)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => diffs.push(format!(
                    "{name}: logrotate {} {:04o} {}:{} {} bytes mtime {:?}; opsd {} {:04o} {}:{} {} bytes mtime {:?}",
                    a.kind, a.mode, a.uid, a.gid, a.content.len(), a.mtime,
                    b.kind, b.mode, b.uid, b.gid, b.content.len(), b.mtime,
                )),
                (Some(_), None) => diffs.push(format!("{name}: only logrotate made it")),
                (None, Some(_)) => diffs.push(format!("{name}: only opsd made it")),
                (None, None) => {}
            }
        }
        if lr.state != opsd.state {
            diffs.push(format!(
                "state: logrotate {:?}; opsd {:?}",
                lr.state, opsd.state
            ));
        }
        if lr.failed != opsd.failed {
            diffs.push(format!(
                "failed: logrotate {}, opsd {}",
                lr.failed, opsd.failed
            ));
        }
        assert!(
            diffs.is_empty(),
            "scenario {name}, step {} ({}) differs (tree {tree}):\n  {}\n--- logrotate said:\n{}\n--- opsd said:\n{}",
            n + 1,
            s.steps[n].0,
            diffs.join("\n  "),
            lr.output,
            opsd.output
        );
    }
}
