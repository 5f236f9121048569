//! An independent reading of `docs/windows-memory.md` §3.2 checked against the driver's
//! memory-information parsers (`vmballoon_nt::memory`): [`check`], used by
//! `tests/properties.rs` and the `memsnap` fuzz target.
//!
//! Rules: a reply is used only if its `ReturnLength` is a documented size of its class and
//! within the buffer; then each field is read at its x64 offset; a negative resident
//! available reads as zero with a diagnostic; a page size other than 4096 makes
//! `SYSTEM_BASIC_INFORMATION` unusable.

use vmballoon_core::units::Frames;

use vmballoon_nt::memory::{
    Diagnostic, InfoClass, Parsed, Partial, failed, parse_basic, parse_memory_usage,
    parse_performance,
};

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

fn expected(class: InfoClass, buf: &[u8], return_length: u32) -> Parsed {
    let len = return_length as usize;
    let none = |d| Parsed {
        fields: Partial::default(),
        diagnostic: Some(d),
    };
    if !class.known_sizes().contains(&len) {
        return none(Diagnostic::UnknownSize {
            class,
            return_length,
        });
    }
    if len > buf.len() {
        return none(Diagnostic::ShortBuffer {
            class,
            return_length,
            buffer_len: buf.len(),
        });
    }
    let ra = |raw: i64, to: fn(u64) -> Frames| match u64::try_from(raw) {
        Ok(v) => (Some(to(v)), None),
        Err(_) => (
            Some(Frames::ZERO),
            Some(Diagnostic::NegativeResidentAvailable { class, raw }),
        ),
    };
    match class {
        InfoClass::Basic => match u32_at(buf, 0x08) {
            4096 => Parsed {
                fields: Partial {
                    total: Some(Frames::new(u64::from(u32_at(buf, 0x0C)))),
                    ..Partial::default()
                },
                diagnostic: None,
            },
            page_size => none(Diagnostic::UnexpectedPageSize { page_size }),
        },
        InfoClass::Performance => {
            let pages = |at| Some(Frames::new(u64::from(u32_at(buf, at))));
            let (resident_available, diagnostic) = if len >= 0x150 {
                ra(u64_at(buf, 0x148) as i64, Frames::new)
            } else {
                (None, None)
            };
            Parsed {
                fields: Partial {
                    total: None,
                    resident_available,
                    available: pages(0x2C),
                    commit_limit: pages(0x34),
                    committed: pages(0x30),
                },
                diagnostic,
            }
        }
        InfoClass::MemoryUsage => {
            let bytes = |at| Some(Frames::from_bytes_floor(u64_at(buf, at)));
            let (resident_available, diagnostic) =
                ra(u64_at(buf, 0x10) as i64, Frames::from_bytes_floor);
            Parsed {
                fields: Partial {
                    total: bytes(0x00),
                    resident_available,
                    available: bytes(0x08),
                    commit_limit: bytes(0x28),
                    committed: bytes(0x18),
                },
                diagnostic,
            }
        }
    }
}

/// Parses `buf` with `return_length` as every class and compares with the rules above;
/// also checks the failed-query reply, the merge and the snapshot conversion.
///
/// # Errors
/// The first difference.
pub fn check(buf: &[u8], return_length: u32, low_memory: bool) -> Result<(), String> {
    type Parser = fn(&[u8], u32) -> Parsed;
    let parsers: [(InfoClass, Parser); 3] = [
        (InfoClass::Basic, parse_basic),
        (InfoClass::Performance, parse_performance),
        (InfoClass::MemoryUsage, parse_memory_usage),
    ];
    let mut merged = Partial::default();
    for (class, parse) in parsers {
        let got = parse(buf, return_length);
        let want = expected(class, buf, return_length);
        if got != want {
            return Err(format!(
                "{} with ReturnLength {return_length:#x} on {} bytes: got {got:?}, expected {want:?}",
                class.name(),
                buf.len()
            ));
        }
        if got.diagnostic.is_none() && !class.known_sizes().contains(&(return_length as usize)) {
            return Err("a reply of an unknown size was trusted".to_owned());
        }
        let f = failed(class, -1);
        if f.fields != Partial::default() {
            return Err("a failed query produced fields".to_owned());
        }
        merged = merged.or(got.fields);
    }
    let snap = merged.into_snapshot(low_memory, false);
    match (merged.total, snap) {
        (None, Err(_)) => {}
        (Some(total), Ok(s))
            if s.total == total
                && s.resident_available == merged.resident_available
                && s.low_memory == low_memory => {}
        (t, s) => return Err(format!("into_snapshot: total {t:?} gave {s:?}")),
    }
    Ok(())
}
