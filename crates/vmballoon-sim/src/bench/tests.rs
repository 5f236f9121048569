use super::*;
use crate::cost::CostModel;

fn scenarios_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

#[test]
fn floors_are_one_call_per_512_entries() {
    let floors: Vec<f64> = CAP_SETS.iter().map(CapSet::floor_calls_per_gib).collect();
    assert_eq!(floors, vec![262_144.0, 512.0, 1.0]);
    assert!(!CAP_SETS[0].batched() && CAP_SETS[1].batched());
}

#[test]
fn every_job_loads_and_matches_its_capability_set() {
    let jobs = jobs(&scenarios_dir()).unwrap();
    // 2 benchmark scenarios and 7 pinned ones, 3 hosts, 4 policies; the oscillation on
    // one host.
    assert_eq!(jobs.len(), (2 + PINNED.len()) * 3 * 4 + 4);
    for j in &jobs {
        assert_eq!(j.scenario.host.capabilities, CAP_SETS[j.cap].capabilities);
    }
}

#[test]
fn metrics_of_the_2m_benchmarks() {
    let all = jobs(&scenarios_dir()).unwrap();
    let picked: Vec<Job> = all
        .into_iter()
        .filter(|j| {
            j.cap == 2
                && matches!(j.kind, BenchKind::Inflate | BenchKind::GiveBack)
                && matches!(j.policy, DriverKind::Vmballoon | DriverKind::LinuxVmw)
        })
        .collect();
    let suite = run_suite(picked, CostModel::default(), 2);
    assert_eq!(suite.runs.len(), 4);
    let vm = suite
        .find(&BenchKind::Inflate, 2, DriverKind::Vmballoon)
        .unwrap();
    let m = inflate_metrics(&vm.result);
    // 8 GiB of 2 MiB pages in and out: 8 full batches each way, 1 call per GiB (the
    // accounting is measured on the first 16 MiB allocated, inside the first batch).
    assert_eq!(m.inflate.page_calls, 8);
    assert_eq!(m.deflate.page_calls, 8);
    assert_eq!(m.inflate.page_calls_per_gib(), Some(1.0));
    assert!(m.inflate.modelled_s.unwrap() > 0.0 && m.inflate.modelled_s.unwrap() < 0.1);
    assert_eq!(m.inflate.poll_s, Some(0.0));
    let b = bookkeeping(&vm.result.summary, PoolModel::SegmentHeap).unwrap();
    // One MDL (and one list node) per whole 2 MiB block.
    assert_eq!(b.chunks, 4096);
    assert!(b.over_floor_pct > 0.0 && b.over_floor_pct < 5.0, "{b:?}");
    let g = give_back_metrics(
        &suite
            .find(&BenchKind::GiveBack, 2, DriverKind::Vmballoon)
            .unwrap()
            .result,
    );
    assert_eq!(g.before_mib, 8928);
    assert_eq!(g.pin_failures, 0);
    assert!(g.modelled_s.is_some());
    let l = give_back_metrics(
        &suite
            .find(&BenchKind::GiveBack, 2, DriverKind::LinuxVmw)
            .unwrap()
            .result,
    );
    assert_eq!(l.before_mib, 10240);
    assert!(
        l.pin_failures >= 1,
        "the pin fails before the peer deflates"
    );
    // The report and the charts come out whatever is missing.
    let cpu = CpuMeasurements {
        frames: GIB_FRAMES,
        ..CpuMeasurements::default()
    };
    let md = markdown(&suite, &cpu, Some(1.0));
    for needle in [
        "## Headline",
        "## Budgets",
        "backdoor calls / GiB inflated",
        "time to inflate 8 GiB, 16 GiB guest (modelled)",
        "nonpaged bookkeeping per ballooned GiB",
        "| metric | floor | vmballoon | linux-vmw | ovt-classic | naive |",
    ] {
        assert!(md.contains(needle), "{needle}");
    }
    let (svgs, errors) = charts(&suite);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(svgs.len(), CHARTS.len());
    for ((name, svg), (listed, _)) in svgs.iter().zip(CHARTS) {
        assert_eq!(name, listed);
        assert!(svg.contains("<svg"), "{name}");
    }
}

#[test]
fn the_oscillation_benchmark_reports_page_traffic_for_every_driver() {
    let all = jobs(&scenarios_dir()).unwrap();
    let picked: Vec<Job> = all
        .into_iter()
        .filter(|j| j.kind == BenchKind::Oscillation)
        .collect();
    assert_eq!(picked.len(), DriverKind::ALL.len());
    let suite = run_suite(picked, CostModel::default(), 2);
    for p in DriverKind::ALL {
        let m = oscillation_metrics(
            &suite
                .find(&BenchKind::Oscillation, OSCILLATION_CAP, p)
                .unwrap()
                .result,
        );
        let s = &suite
            .find(&BenchKind::Oscillation, OSCILLATION_CAP, p)
            .unwrap()
            .result
            .summary;
        assert_eq!(m.frames_moved, s.frames_locked + s.frames_unlocked, "{p}");
        assert!(m.mean_balloon_mib > 0.0, "{p}");
    }
    let cpu = CpuMeasurements {
        frames: GIB_FRAMES,
        ..CpuMeasurements::default()
    };
    let md = markdown(&suite, &cpu, None);
    assert!(md.contains("## 8. Page traffic under oscillating pinned memory"));
    assert!(md.contains("| frames moved (locked + unlocked) |"));
    let b = budgets(&suite, &cpu);
    assert!(
        b.iter().any(|b| b
            .name
            .starts_with("page traffic under oscillating pinned memory")),
        "the churn budget row"
    );
}
