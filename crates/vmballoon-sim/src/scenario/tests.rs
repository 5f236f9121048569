use super::*;

const GOOD: &str = r#"
name = "t"
duration_s = 30

[guest]
ram_mib = 4096
os_locked_mib = 300

[[events]]
at_s = 0
target_mib = 100
"#;

fn err(text: &str) -> ScenarioError {
    match Scenario::parse(text, "x.toml") {
        Err(e) => e,
        Ok(s) => panic!("accepted: {s:?}"),
    }
}

/// `text` with `line` appended to the `[guest]` table... or wherever `marker` is.
fn with(extra: &str) -> String {
    format!("{GOOD}{extra}")
}

#[test]
fn the_builtin_kb_scenario_loads() {
    let s = Scenario::parse(KB_340369, "kb").unwrap();
    assert_eq!(s.name, "kb-340369");
    assert_eq!(s.guest.ram, Frames::from_mib(4096));
    assert_eq!(s.guest.os_locked, Frames::from_mib(300));
    assert_eq!(s.host.max_balloon_percent, 65);
    assert_eq!(s.duration, Duration::from_secs(120));
    assert_eq!(s.events.len(), 3);
    assert!(matches!(
        s.events[0].action,
        Action::Lock {
            kind: PinKind::Awe,
            ..
        }
    ));
    assert_eq!(s.events[1].action, Action::Target(Frames::from_mib(2662)));
    assert_eq!(Scenario::builtin().name, "kb-340369");
}

#[test]
fn defaults_apply_where_the_format_is_silent() {
    let s = Scenario::parse("name = \"d\"\n[guest]\nram_mib = 1024\n", "d").unwrap();
    assert_eq!(s.duration, Duration::from_secs(60));
    assert_eq!(s.host, HostSpec::default());
    assert_eq!(s.config, Config::default());
    assert_eq!(s.guest.pagefile, Frames::ZERO);
    assert!(s.events.is_empty());
    let s = Scenario::parse(
        "name = \"d\"\n[guest]\nram_mib = 1024\n[[events]]\nat_s = 100\nlock_mib = 1\n",
        "d",
    )
    .unwrap();
    assert_eq!(s.duration, Duration::from_secs(160));
    assert!(matches!(&s.events[0].action,
        Action::Lock { kind: PinKind::VirtualLock, id, .. } if id == "virtual-lock@4"));
}

#[test]
fn legacy_host_and_config() {
    let s = Scenario::parse(
        &with("[host]\ncapabilities = []\nmax_balloon_percent = 0\n[config]\nMaxBalloonMB = 1330\nPollIntervalMs = 250\n"),
        "x",
    )
    .unwrap();
    assert_eq!(s.host.capabilities, None);
    assert_eq!(s.host.max_balloon_percent, 0);
    assert_eq!(s.config.max_balloon, Some(Frames::from_mib(1330)));
    assert_eq!(s.config.poll_interval, Duration::from_millis(250));
}

#[test]
fn events_are_sorted_by_time_stably() {
    let s = Scenario::parse(
        &with("[[events]]\nat_s = 0\ntarget_mib = 7\n[[events]]\nat_s = 2.5\nhost_reset = true\n[[events]]\nat_s = 1\nhost_busy_calls = 3\n"),
        "x",
    )
    .unwrap();
    let actions: Vec<_> = s.events.iter().map(|e| e.action.clone()).collect();
    assert_eq!(
        actions,
        vec![
            Action::Target(Frames::from_mib(100)),
            Action::Target(Frames::from_mib(7)),
            Action::HostBusy(3),
            Action::HostReset,
        ]
    );
    assert_eq!(s.events[3].at, Instant::from_nanos(2_500_000_000));
}

#[test]
fn bad_toml_names_the_line() {
    let e = err("name = \"x\"\n[guest]\nram_mib = = 3\n");
    assert_eq!((e.file.as_str(), e.line), ("x.toml", 3));
    assert!(e.message.starts_with("invalid TOML"), "{e}");
    assert!(!e.to_string().contains('\n'));
    let e = err("name = \"x\"\nname = \"y\"\n");
    assert_eq!(e.line, 2);
}

#[test]
fn unknown_keys_name_key_line_and_table() {
    let e = err(&with("[[events]]\nat_s = 1\nlock_mb = 5\n"));
    assert_eq!(e.line, 14);
    assert_eq!(
        e.message,
        "unknown key `lock_mb` in [[events]] (did you mean `lock_mib`?)"
    );
    assert_eq!(
        e.to_string(),
        "x.toml:14: unknown key `lock_mb` in [[events]] (did you mean `lock_mib`?)"
    );
    let e = err("name = \"x\"\nfoo = 1\n[guest]\nram_mib = 1024\n");
    assert_eq!(
        (e.line, e.message.as_str()),
        (2, "unknown key `foo` in the top level")
    );
    let e = err("name = \"x\"\n[guest]\nram_mib = 1024\nswap_mib = 3\n");
    assert_eq!(
        (e.line, e.message.as_str()),
        (4, "unknown key `swap_mib` in [guest]")
    );
    let e = err(&with("[config]\nmaxballoonmb = 3\n"));
    assert!(e.message.contains("did you mean `MaxBalloonMB`"), "{e}");
}

#[test]
fn negative_and_non_integer_sizes() {
    let e = err(&with("[[events]]\nat_s = 1\nlock_mib = -5\n"));
    assert_eq!(e.line, 14);
    assert_eq!(e.message, "`lock_mib` must not be negative (got -5)");
    let e = err("name = \"x\"\n[guest]\nram_mib = -4096\n");
    assert_eq!(
        (e.line, e.message.as_str()),
        (3, "`ram_mib` must not be negative (got -4096)")
    );
    let e = err(&with("[[events]]\nat_s = 1\ncommit_mib = 1.5\n"));
    assert_eq!(
        e.message,
        "`commit_mib` must be an integer (MiB), not float"
    );
    let e = err(&with("[[events]]\nat_s = -1\ntarget_mib = 1\n"));
    assert_eq!(e.message, "`at_s` must not be negative (got -1)");
    let e = err(&with("[[events]]\nat_s = nan\ntarget_mib = 1\n"));
    assert!(e.message.contains("finite"), "{e}");
    let e = err("name = \"x\"\n[guest]\nram_mib = 99999999999999999999999\n");
    assert_eq!(
        e.message,
        "`ram_mib` = 99999999999999999999999 is over the model's limit of 65536 MiB (64 GiB)"
    );
}

#[test]
fn event_rules() {
    let e = err(&with(
        "[[events]]\nat_s = 1\nkind = \"awe\"\nlock_mib = 5\nkind2 = 1\n",
    ));
    assert!(e.message.starts_with("unknown key `kind2`"), "{e}");
    let e = err(&with(
        "[[events]]\nat_s = 1\nlock_mib = 5\nkind = \"pinned\"\n",
    ));
    assert_eq!(e.line, 15);
    assert!(e.message.starts_with("unknown `kind` \"pinned\""), "{e}");
    let e = err(&with("[[events]]\nat_s = 1\n"));
    assert_eq!(e.line, 12);
    assert!(e.message.starts_with("[[events]] has no action"), "{e}");
    let e = err(&with(
        "[[events]]\nat_s = 1\nlock_mib = 5\ncommit_mib = 5\n",
    ));
    assert_eq!(e.line, 15);
    assert_eq!(
        e.message,
        "[[events]] has two actions, `lock_mib` and `commit_mib` (one per event)"
    );
    let e = err(&with(
        "[[events]]\nat_s = 1\ncommit_mib = 5\nkind = \"awe\"\n",
    ));
    assert_eq!(e.message, "`kind` needs `lock_mib` in the same event");
    let e = err(&with("[[events]]\nat_s = 1\nrelease = \"nope\"\n"));
    assert!(e.message.contains("unknown id \"nope\""), "{e}");
    let e = err(&with(
        "[[events]]\nat_s = 5\nrelease = \"a\"\n[[events]]\nat_s = 9\nid = \"a\"\nlock_mib = 1\n",
    ));
    assert!(
        e.message
            .contains("comes before its request (line 15, at 9 s)"),
        "release before the lock: {e}"
    );
    assert_eq!(e.line, 14);
    let e = err(&with(
        "[[events]]\nat_s = 1\nid = \"a\"\nlock_mib = 1\n[[events]]\nat_s = 2\nid = \"a\"\ncommit_mib = 1\n",
    ));
    assert_eq!(e.message, "duplicate id \"a\" (first used on line 12)");
    let e = err(&with("[[events]]\nat_s = 31\ntarget_mib = 1\n"));
    assert_eq!(
        e.message,
        "`at_s` = 31 is after the end of the run (duration_s = 30)"
    );
    let e = err(&with("[[events]]\nat_s = 1\nhost_reset = false\n"));
    assert!(e.message.contains("must be true"), "{e}");
    let e = err(&with("[[events]]\nat_s = 1\nid = \"z\"\ntarget_mib = 3\n"));
    assert!(e.message.starts_with("`id` names"), "{e}");
    let e = err(&with("[[events]]\nat_s = 1\nmissing_at = 1\n"));
    assert!(e.message.starts_with("unknown key `missing_at`"), "{e}");
    let e = err(&with("[[events]]\ntarget_mib = 1\n"));
    assert_eq!(e.message, "missing required key `at_s` in [[events]]");
    assert_eq!(e.line, 12);
}

#[test]
fn required_keys_ranges_and_types() {
    let e = err("[guest]\nram_mib = 1024\n");
    assert_eq!(
        (e.line, e.message.as_str()),
        (1, "missing required key `name` in the top level")
    );
    let e = err("name = \"x\"\n");
    assert_eq!(e.message, "missing required table [guest]");
    let e = err("name = \"x\"\n[guest]\nos_locked_mib = 3\n");
    assert_eq!(
        (e.line, e.message.as_str()),
        (2, "missing required key `ram_mib` in [guest]")
    );
    let e = err("name = \"x\"\n[guest]\nram_mib = \"4096\"\n");
    assert_eq!(e.message, "`ram_mib` must be an integer (MiB), not string");
    let e = err("name = \"x\"\n[guest]\nram_mib = 4095\n");
    assert!(e.message.contains("multiple of 2"), "{e}");
    let e = err("name = \"x\"\n[guest]\nram_mib = 1024\nos_locked_mib = 2048\n");
    assert_eq!(e.line, 4);
    let e = err(&with("[config]\nMaxBalloonPercent = 150\n"));
    assert_eq!(e.line, 13);
    assert_eq!(
        e.message,
        "`MaxBalloonPercent` = 150 is out of range 0..=100"
    );
    let e = err(&with("[config]\nPollIntervalMs = 50\n"));
    assert_eq!(
        e.message,
        "`PollIntervalMs` = 50 is out of range 100..=10000"
    );
    let e = err(&with("[config]\nMaxBalloonMB = 5000\n"));
    assert_eq!(e.message, "`MaxBalloonMB` = 5000 is out of range 0..=4096");
    let e = err(&with("[config]\nMaxBalloonMB = 99999999999999999999\n"));
    assert_eq!(
        e.message,
        "`MaxBalloonMB` = 99999999999999999999 is over its range 0..=4096"
    );
    let e = err(&with("[host]\ncapabilities = [\"basic\", \"turbo\"]\n"));
    assert_eq!(e.line, 13);
    assert!(e.message.starts_with("unknown capability \"turbo\""), "{e}");
    let e = err(&with("[host]\nmax_balloon_percent = 101\n"));
    assert!(e.message.contains("out of range"), "{e}");
    let e = err(&with("[guest]\nram_mib = 3\n"));
    assert!(
        e.message.starts_with("invalid TOML"),
        "duplicate table: {e}"
    );
    assert_eq!(e.line, 12);
    let e = err("name = \"x\"\nduration_s = 0\n[guest]\nram_mib = 1024\n");
    assert!(e.message.contains("duration_s"), "{e}");
    let e = err("name = \"\"\n[guest]\nram_mib = 1024\n");
    assert_eq!(e.message, "`name` must not be empty");
    let e = err("name = \"x\"\nevents = 3\n[guest]\nram_mib = 1024\n");
    assert!(e.message.starts_with("`events` must be"), "{e}");
}

#[test]
fn no_input_panics_the_loader() {
    // Every prefix of the built-in scenario, and a few mutations of it: errors, never a
    // panic, always one line.
    let text = KB_340369;
    for end in (0..text.len()).filter(|&i| text.is_char_boundary(i)) {
        if let Err(e) = Scenario::parse(&text[..end], "p") {
            assert!(!e.to_string().contains('\n'), "{e}");
            assert!(e.line >= 1);
        }
    }
    for (from, to) in [
        ("4096", "-1"),
        ("2662", "1e400"),
        ("\"awe\"", "5"),
        ("[host]", "[[host]]"),
        ("at_s = 40", "at_s = 40\nat_s = 41"),
        ("= 65", "= 65.5"),
        ("[[events]]", "[events]"),
    ] {
        let mutated = text.replacen(from, to, 1);
        if let Err(e) = Scenario::parse(&mutated, "m") {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
}

// ---- limits: times, sizes, guests that cannot boot ----------------------------------

/// A minimal scenario without `duration_s`, with `events` appended.
fn no_duration(events: &str) -> String {
    format!("name = \"x\"\n[guest]\nram_mib = 1024\n{events}")
}

#[test]
fn far_future_event_time_is_rejected() {
    // Each of these used to hang (1e10: the run lasted 1e10 s), or overflow to a zero
    // duration and exit 0 with every event skipped (1e17, 1e300), or silently run past
    // the one-day cap that an explicit duration_s gets (100000).
    for at in [
        "1e10",
        "1e17",
        "1e300",
        "1e400",
        "100000",
        "86401",
        "9223372036854775807",
        "99999999999999999999999999999999999999999",
    ] {
        let e = err(&no_duration(&format!(
            "[[events]]\nat_s = {at}\ntarget_mib = 1\n"
        )));
        assert_eq!(e.line, 5, "{e}");
        assert!(
            e.message.starts_with("`at_s` = ")
                && e.message
                    .ends_with("is over the limit of 86400 s (one simulated day)"),
            "{at}: {e}"
        );
        assert!(!e.to_string().contains('\n'));
        // The same with an explicit duration: the same limit.
        let e = err(&format!(
            "name = \"x\"\nduration_s = 86400\n[guest]\nram_mib = 1024\n\
             [[events]]\nat_s = {at}\ntarget_mib = 1\n"
        ));
        assert!(e.message.contains("over the limit of 86400 s"), "{at}: {e}");
    }
    // Shown as written, shortened when long.
    let e = err(&no_duration(&format!(
        "[[events]]\nat_s = {}\ntarget_mib = 1\n",
        "9".repeat(200)
    )));
    assert!(e.message.len() < 120, "{e}");
    let e = err("name = \"x\"\nduration_s = 1e17\n[guest]\nram_mib = 1024\n");
    assert_eq!(
        (e.line, e.message.as_str()),
        (
            2,
            "`duration_s` = 1e17 is over the limit of 86400 s (one simulated day)"
        )
    );
}

#[test]
fn derived_duration_obeys_the_one_day_cap() {
    // Without duration_s the run lasts until the last event + 60 s: that must fit in the
    // day too, and the error names the last event's `at_s`.
    let e = err(&no_duration(
        "[[events]]\nat_s = 1\ntarget_mib = 1\n[[events]]\nat_s = 86341\ntarget_mib = 2\n",
    ));
    assert_eq!(e.line, 8, "{e}");
    assert_eq!(
        e.message,
        "`at_s` = 86341: without `duration_s` the run would last 86401 s (last event + 60 s), \
         over the limit of 86400 s (one simulated day); set `duration_s`"
    );
    let s = Scenario::parse(
        &no_duration("[[events]]\nat_s = 86340\ntarget_mib = 1\n"),
        "x",
    )
    .unwrap();
    assert_eq!(s.duration, Duration::from_secs(86_400));
    // An explicit duration may hold events up to its end.
    let s = Scenario::parse(
        "name = \"x\"\nduration_s = 86400\n[guest]\nram_mib = 1024\n\
         [[events]]\nat_s = 86400\ntarget_mib = 1\n",
        "x",
    )
    .unwrap();
    assert_eq!(s.events[0].at, Instant::from_nanos(86_400_000_000_000));
}

#[test]
fn non_finite_negative_and_zero_times_are_rejected() {
    for (at, want) in [
        ("inf", "`at_s` must be a finite number of seconds (got inf)"),
        (
            "+inf",
            "`at_s` must be a finite number of seconds (got +inf)",
        ),
        (
            "-inf",
            "`at_s` must be a finite number of seconds (got -inf)",
        ),
        ("nan", "`at_s` must be a finite number of seconds (got nan)"),
        ("-1e300", "`at_s` must not be negative (got -1e300)"),
        ("-0.5", "`at_s` must not be negative (got -0.5)"),
        (
            "-99999999999999999999999999999999999999999",
            "`at_s` must not be negative (got -999999999999999999999999999999999999999...)",
        ),
    ] {
        let e = err(&no_duration(&format!(
            "[[events]]\nat_s = {at}\ntarget_mib = 1\n"
        )));
        assert_eq!((e.line, e.message.as_str()), (5, want));
    }
    // -0.0 is zero.
    let s = Scenario::parse(
        &no_duration("[[events]]\nat_s = -0.0\ntarget_mib = 1\n"),
        "x",
    )
    .unwrap();
    assert_eq!(s.events[0].at, Instant::from_nanos(0));
    for d in ["0", "0.0", "1e-12", "-1", "nan", "inf"] {
        let e = err(&format!(
            "name = \"x\"\nduration_s = {d}\n[guest]\nram_mib = 1024\n"
        ));
        assert_eq!(e.line, 2, "{d}: {e}");
        assert!(e.message.starts_with("`duration_s`"), "{d}: {e}");
    }
}

#[test]
fn impossible_guest_is_rejected() {
    // 4000 MiB locked by the OS and 4000 MiB committed at boot, with 4096 MiB of RAM and
    // no page file: the guest's commit charge (8000 MiB) is over its commit limit.
    let e = err(
        "name = \"x\"\n[guest]\nram_mib = 4096\nos_locked_mib = 4000\ncommitted_mib = 4000\n\
         pagefile_mib = 0\n",
    );
    assert_eq!(e.line, 5);
    assert_eq!(
        e.message,
        "the guest cannot boot: os_locked_mib + committed_mib = 8000 MiB is over its commit \
         limit ram_mib + pagefile_mib = 4096 MiB"
    );
    // With a page file large enough it boots (pageable commit may be paged out).
    let s = Scenario::parse(
        "name = \"x\"\n[guest]\nram_mib = 4096\nos_locked_mib = 4000\ncommitted_mib = 4000\n\
         pagefile_mib = 3904\n",
        "x",
    )
    .unwrap();
    assert_eq!(s.guest.committed, Frames::from_mib(4000));
    let e = err(
        "name = \"x\"\n[guest]\nram_mib = 4096\nos_locked_mib = 4000\ncommitted_mib = 4000\n\
         pagefile_mib = 3903\n",
    );
    assert!(
        e.message.contains("8000 MiB is over its commit limit"),
        "{e}"
    );
}

#[test]
fn sizes_beyond_the_model_name_the_real_limit() {
    for ram in [
        "18446744073709551615",
        "18446744073709551614",
        "65538",
        "131072",
        "0x7fffffffffffffff",
    ] {
        let e = err(&format!("name = \"x\"\n[guest]\nram_mib = {ram}\n"));
        assert_eq!(
            e.message,
            format!("`ram_mib` = {ram} is over the model's limit of 65536 MiB (64 GiB)")
        );
    }
    let s = Scenario::parse("name = \"x\"\n[guest]\nram_mib = 65536\n", "x").unwrap();
    assert_eq!(s.guest.ram, Frames::from_mib(65_536));
    let e = err("name = \"x\"\n[guest]\nram_mib = 4095\n");
    assert!(e.message.contains("multiple of 2"), "{e}");
    // Never a number that wrapped or saturated: the value as written and the limit.
    for key in ["os_locked_mib", "pagefile_mib", "committed_mib"] {
        let e = err(&format!(
            "name = \"x\"\n[guest]\nram_mib = 4096\n{key} = 9223372036854775807\n"
        ));
        assert_eq!(
            e.message,
            format!("`{key}` = 9223372036854775807 is over the limit of 1048576 MiB (1 TiB)")
        );
    }
    for key in ["target_mib", "lock_mib", "commit_mib"] {
        let e = err(&with(&format!("[[events]]\nat_s = 1\n{key} = 1048577\n")));
        assert_eq!(
            e.message,
            format!("`{key}` = 1048577 is over the limit of 1048576 MiB (1 TiB)")
        );
    }
    // At the limit, a request that can never be met is still a valid scenario.
    let s = Scenario::parse(&with("[[events]]\nat_s = 1\nlock_mib = 1048576\n"), "x").unwrap();
    assert!(
        matches!(s.events[1].action, Action::Lock { size, .. } if size.mib_floor() == 1_048_576)
    );
}

#[test]
fn too_many_events_are_rejected() {
    let one = "[[events]]\nat_s = 1\nhost_reset = true\n";
    let ok = with(&one.repeat(MAX_EVENTS - 1));
    assert_eq!(Scenario::parse(&ok, "x").unwrap().events.len(), MAX_EVENTS);
    let e = err(&with(&one.repeat(MAX_EVENTS)));
    assert_eq!(e.line, 12 + 3 * (MAX_EVENTS - 1));
    assert!(
        e.message
            .starts_with("too many [[events]]: 1001 (the limit is 1000"),
        "{e}"
    );
}

// ---- releases ------------------------------------------------------------------------

#[test]
fn release_written_before_its_lock_follows_time_order() {
    // What counts is when the events take effect, not where they are written.
    let s = Scenario::parse(
        &with(
            "[[events]]\nat_s = 9\nrelease = \"a\"\n\
             [[events]]\nat_s = 5\nid = \"a\"\nlock_mib = 1\n",
        ),
        "x",
    )
    .unwrap();
    let actions: Vec<_> = s.events.iter().map(|e| e.action.clone()).collect();
    assert!(matches!(&actions[1], Action::Lock { id, .. } if id == "a"));
    assert_eq!(actions[2], Action::Release("a".to_owned()));
    // At the same time, file order decides: a release written first comes first.
    let e = err(&with(
        "[[events]]\nat_s = 5\nrelease = \"a\"\n[[events]]\nat_s = 5\nid = \"a\"\ncommit_mib = 1\n",
    ));
    assert_eq!(e.line, 14);
    assert!(
        e.message
            .contains("comes before its request (line 15, at 5 s)"),
        "{e}"
    );
    let s = Scenario::parse(
        &with("[[events]]\nat_s = 5\nid = \"a\"\ncommit_mib = 1\n[[events]]\nat_s = 5\nrelease = \"a\"\n"),
        "x",
    )
    .unwrap();
    assert_eq!(s.events[2].action, Action::Release("a".to_owned()));
}

#[test]
fn releasing_an_id_twice_is_rejected() {
    let e = err(&with(
        "[[events]]\nat_s = 1\nid = \"a\"\nlock_mib = 1\n\
         [[events]]\nat_s = 3\nrelease = \"a\"\n\
         [[events]]\nat_s = 2\nrelease = \"a\"\n",
    ));
    // In time order the release at 2 s is the first, the one at 3 s the second.
    assert_eq!(e.line, 18);
    assert_eq!(
        e.message,
        "`release` = \"a\" frees id \"a\" a second time (already released on line 21); each id \
         is released once"
    );
}

#[test]
fn automatic_ids_cannot_be_released_or_taken() {
    let e = err(&with(
        "[[events]]\nat_s = 1\nlock_mib = 1\n[[events]]\nat_s = 2\nrelease = \"virtual-lock@12\"\n",
    ));
    assert!(e.message.contains("unknown id \"virtual-lock@12\""), "{e}");
    let e = err(&with(
        "[[events]]\nat_s = 1\nid = \"commit@16\"\nlock_mib = 1\n[[events]]\nat_s = 2\ncommit_mib = 1\n",
    ));
    assert_eq!(e.line, 12);
    assert!(e.message.starts_with("duplicate id \"commit@16\""), "{e}");
}

#[test]
fn duplicate_toml_key_message_names_the_key() {
    for (text, line, key) in [
        (
            "name = \"x\"\nname = \"y\"\n[guest]\nram_mib = 1024\n",
            2,
            "name",
        ),
        (
            "name = \"x\"\n[guest]\nram_mib = 1024\nram_mib = 2048\n",
            4,
            "ram_mib",
        ),
        (
            "name = \"x\"\n[guest]\nram_mib = 1024\n[guest]\nos_locked_mib = 3\n",
            4,
            "guest",
        ),
        (
            "name = \"x\"\n[guest]\nram_mib = 1024\n[[events]]\nat_s = 1\ntarget_mib = 3\ntarget_mib = 4\n",
            7,
            "target_mib",
        ),
    ] {
        let e = err(text);
        assert_eq!(e.line, line, "{e}");
        assert_eq!(
            e.message,
            format!("invalid TOML: duplicate key `{key}` (each key once per table)")
        );
    }
}

#[test]
fn repeated_events_expand_with_numbered_ids_and_releases() {
    let s = Scenario::parse(
        &with(
            "[[events]]\nat_s = 6\nid = \"buf\"\nlock_mib = 1024\nkind = \"probe-and-lock\"\n\
             repeat_every_s = 6\nrepeat_count = 3\n\
             [[events]]\nat_s = 9\nrelease = \"buf\"\nrepeat_every_s = 6\nrepeat_count = 3\n",
        ),
        "x",
    )
    .unwrap();
    let got: Vec<(u64, Action)> = s
        .events
        .iter()
        .skip(1)
        .map(|e| (e.at.as_nanos() / 1_000_000_000, e.action.clone()))
        .collect();
    let lock = |n: u32| Action::Lock {
        id: format!("buf#{n}"),
        kind: PinKind::ProbeAndLock,
        size: Frames::from_mib(1024),
        partial_ok: false,
    };
    let release = |n: u32| Action::Release(format!("buf#{n}"));
    assert_eq!(
        got,
        vec![
            (6, lock(1)),
            (9, release(1)),
            (12, lock(2)),
            (15, release(2)),
            (18, lock(3)),
            (21, release(3)),
        ]
    );
    // One occurrence may be named.
    assert!(
        Scenario::parse(
            &with(
                "[[events]]\nat_s = 1\nid = \"b\"\nlock_mib = 1\nrepeat_every_s = 1\n\
                 repeat_count = 2\n[[events]]\nat_s = 5\nrelease = \"b#2\"\n"
            ),
            "x"
        )
        .is_ok()
    );
}

#[test]
fn repeat_rules() {
    let e = err(&with(
        "[[events]]\nat_s = 1\nlock_mib = 1\nrepeat_count = 2\n",
    ));
    assert_eq!(
        e.message,
        "`repeat_count` needs `repeat_every_s` in the same event"
    );
    let e = err(&with(
        "[[events]]\nat_s = 1\nlock_mib = 1\nrepeat_every_s = 2\n",
    ));
    assert_eq!(
        e.message,
        "`repeat_every_s` needs `repeat_count` in the same event"
    );
    let e = err(&with(
        "[[events]]\nat_s = 1\nlock_mib = 1\nrepeat_every_s = 0\nrepeat_count = 2\n",
    ));
    assert!(
        e.message.starts_with("`repeat_every_s` must be above 0"),
        "{e}"
    );
    let e = err(&with(
        "[[events]]\nat_s = 1\nlock_mib = 1\nrepeat_every_s = 1\nrepeat_count = 0\n",
    ));
    assert!(
        e.message.starts_with("`repeat_count` must be at least 1"),
        "{e}"
    );
    // The last occurrence must be within the run (duration_s = 30).
    let e = err(&with(
        "[[events]]\nat_s = 10\ntarget_mib = 1\nrepeat_every_s = 10\nrepeat_count = 4\n",
    ));
    assert_eq!(e.line, 13, "the line of its `at_s`");
    assert!(
        e.message
            .starts_with("occurrence 4 of 4 of this repeated event, at 40 s,"),
        "{e}"
    );
    // The expanded total is bounded.
    let e = err(&with(
        "[[events]]\nat_s = 0\ntarget_mib = 1\nrepeat_every_s = 0.001\nrepeat_count = 10001\n",
    ));
    assert!(e.message.contains("is over the limit of 10000"), "{e}");
    let e = err(&with(
        "[[events]]\nat_s = 0\ntarget_mib = 1\nrepeat_every_s = 0.001\nrepeat_count = 6000\n\
         [[events]]\nat_s = 0\ntarget_mib = 1\nrepeat_every_s = 0.001\nrepeat_count = 6000\n",
    ));
    assert!(
        e.message.starts_with("too many events once repeated"),
        "{e}"
    );
    assert_eq!(e.line, 17, "the second event's header");
    // A repeated release of a request that is not repeated releases it twice.
    let e = err(&with(
        "[[events]]\nat_s = 1\nid = \"a\"\nlock_mib = 1\n\
         [[events]]\nat_s = 2\nrelease = \"a\"\nrepeat_every_s = 1\nrepeat_count = 2\n",
    ));
    assert!(e.message.contains("a second time"), "{e}");
    // `#` is reserved for occurrences.
    let e = err(&with("[[events]]\nat_s = 1\nid = \"a#1\"\nlock_mib = 1\n"));
    assert!(e.message.contains("contains `#`"), "{e}");
}

#[test]
fn partial_ok_and_the_new_kinds() {
    let s = Scenario::parse(
        &with(
            "[[events]]\nat_s = 1\nlock_mib = 8\nkind = \"nonpaged-pool\"\npartial_ok = true\n\
             [[events]]\nat_s = 2\nlock_mib = 8\nkind = \"probe-and-lock\"\n",
        ),
        "x",
    )
    .unwrap();
    assert!(matches!(
        s.events[1].action,
        Action::Lock {
            kind: PinKind::NonpagedPool,
            partial_ok: true,
            ..
        }
    ));
    assert!(matches!(
        s.events[2].action,
        Action::Lock {
            kind: PinKind::ProbeAndLock,
            partial_ok: false,
            ..
        }
    ));
    let e = err(&with(
        "[[events]]\nat_s = 1\nlock_mib = 8\nkind = \"virtual-lock\"\npartial_ok = true\n",
    ));
    assert!(e.message.starts_with("`partial_ok` needs a `kind`"), "{e}");
    let e = err(&with(
        "[[events]]\nat_s = 1\ncommit_mib = 8\npartial_ok = true\n",
    ));
    assert_eq!(e.message, "`partial_ok` needs `lock_mib` in the same event");
    let e = err(&with(
        "[[events]]\nat_s = 1\nlock_mib = 8\npartial_ok = 1\n",
    ));
    assert!(e.message.contains("must be true or false"), "{e}");
}

#[test]
fn host_injections_take_inline_tables() {
    let s = Scenario::parse(
        &with(
            "[[events]]\nat_s = 1\nhost_entry_status = { status = \"notneeded\", pages = 3 }\n\
             [[events]]\nat_s = 1\nhost_entry_status = { status = \"busy\", pages = 2, on = \"unlock\" }\n\
             [[events]]\nat_s = 1\nhost_target_after_locks = { locks = 4, target_mib = 10 }\n",
        ),
        "x",
    )
    .unwrap();
    assert_eq!(
        s.events[1].action,
        Action::HostEntryStatus {
            status: Status::PpnNotNeeded,
            pages: 3,
            on: EntryDirection::Lock
        }
    );
    assert_eq!(
        s.events[2].action,
        Action::HostEntryStatus {
            status: Status::Busy,
            pages: 2,
            on: EntryDirection::Unlock
        }
    );
    assert_eq!(
        s.events[3].action,
        Action::HostTargetAfterLocks {
            locks: 4,
            target: Frames::from_mib(10)
        }
    );
    let e = err(&with(
        "[[events]]\nat_s = 1\nhost_entry_status = { status = \"pinned\", pages = 3 }\n",
    ));
    assert_eq!(
        e.message,
        "unknown `status` \"pinned\" (expected notneeded, busy, reset)"
    );
    let e = err(&with(
        "[[events]]\nat_s = 1\nhost_entry_status = { status = \"busy\" }\n",
    ));
    assert_eq!(
        e.message,
        "missing required key `pages` in `host_entry_status`"
    );
    let e = err(&with(
        "[[events]]\nat_s = 1\nhost_entry_status = { status = \"busy\", page = 1 }\n",
    ));
    assert!(
        e.message
            .starts_with("unknown key `page` in `host_entry_status`"),
        "{e}"
    );
    let e = err(&with("[[events]]\nat_s = 1\nhost_entry_status = 3\n"));
    assert!(e.message.contains("must be an inline table"), "{e}");
    let e = err(&with(
        "[[events]]\nat_s = 1\nhost_target_after_locks = { locks = 0, target_mib = 1 }\n",
    ));
    assert!(e.message.starts_with("`locks` must be at least 1"), "{e}");
}

#[test]
fn mdl_accounting_is_a_guest_option() {
    let s = Scenario::parse(GOOD, "x").unwrap();
    assert_eq!(s.mdl_accounting, MdlAccounting::Charged);
    let s = Scenario::parse(
        &GOOD.replace(
            "ram_mib = 4096",
            "ram_mib = 4096\nmdl_accounting = \"not-charged\"",
        ),
        "x",
    )
    .unwrap();
    assert_eq!(s.mdl_accounting, MdlAccounting::NotCharged);
    let e = err(&GOOD.replace(
        "ram_mib = 4096",
        "ram_mib = 4096\nmdl_accounting = \"maybe\"",
    ));
    assert_eq!(
        e.message,
        "unknown `mdl_accounting` \"maybe\" (expected \"charged\" or \"not-charged\")"
    );
}
