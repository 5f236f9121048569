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
    assert!(e.message.contains("too large"), "{e}");
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
        e.message.contains("unknown id \"a\""),
        "release before the lock: {e}"
    );
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
