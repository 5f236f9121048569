//! Core CPU per frame on the inflate and deflate paths (criterion). The platform is the
//! cheapest possible (`vmballoon_core::workload`), so the time is the engine's own:
//! planning, the channel, batch encoding and decoding, bookkeeping.
//!
//! `cargo bench -p vmballoon-core --features fake`; `cargo xtask bench` also runs it.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use vmballoon_core::units::{Frames, PageSize};
use vmballoon_core::workload::{Path, run, setup};

fn paths(c: &mut Criterion) {
    let frames = Frames::from_mib(1024);
    let mut group = c.benchmark_group("engine-1GiB");
    group.throughput(Throughput::Elements(frames.get()));
    group.sample_size(20);
    for (size, name) in [(PageSize::Small, "4k"), (PageSize::Large, "2m")] {
        for (path, pname) in [(Path::Inflate, "inflate"), (Path::Deflate, "deflate")] {
            group.bench_function(format!("{pname}-{name}"), |b| {
                b.iter_batched(
                    || setup(path, size, frames),
                    |mut balloon| {
                        let moved = run(&mut balloon);
                        assert_eq!(moved, frames);
                        balloon
                    },
                    BatchSize::LargeInput,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, paths);
criterion_main!(benches);
