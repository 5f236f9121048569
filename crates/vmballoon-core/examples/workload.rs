//! One engine workload for instruction counting under callgrind:
//! `workload <inflate|deflate> <4k|2m> <MiB>`. Only `measured` is counted
//! (`valgrind --tool=callgrind --toggle-collect=*measured*`), so setup is excluded.

use std::process::ExitCode;

use vmballoon_core::units::{Frames, PageSize};
use vmballoon_core::workload::{BenchBalloon, Path, run, setup};

#[inline(never)]
fn measured(b: &mut BenchBalloon) -> Frames {
    run(b)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, size, mib) = match args.as_slice() {
        [p, s, m] => {
            let path = match p.as_str() {
                "inflate" => Path::Inflate,
                "deflate" => Path::Deflate,
                _ => return usage(),
            };
            let size = match s.as_str() {
                "4k" => PageSize::Small,
                "2m" => PageSize::Large,
                _ => return usage(),
            };
            let Ok(mib) = m.parse::<u64>() else {
                return usage();
            };
            (path, size, mib)
        }
        _ => return usage(),
    };
    let frames = Frames::from_mib(mib);
    let mut b = setup(path, size, frames);
    let moved = measured(&mut b);
    println!("frames {}", moved.get());
    if moved == frames {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: workload <inflate|deflate> <4k|2m> <MiB>");
    ExitCode::from(2)
}
