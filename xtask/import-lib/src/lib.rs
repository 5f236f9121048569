//! An AMD64 import library from one of the committed `.def` files in `xtask/link/`,
//! written with `ar_archive_writer` (the crate rustc itself writes import libraries with).
//!
//! Used by the driver's build script, which gives the real Windows link its `rpcrt4.lib`
//! from `xtask/link/rpcrt4.def` (`build.rs`; why, in `xtask/link/README.md`, "rpcrt4"), and
//! by `cargo xtask build-sys`, which makes every import library of the Linux link with it,
//! so both links get the same bytes; xtask's tests read those bytes back. The `.def` subset
//! read: `;` comments, `LIBRARY name`, `EXPORTS`, then one name per line.

use std::io::Cursor;

use ar_archive_writer::{COFFShortExport, MachineTypes, write_import_library};

/// The module a `.def` file names (`LIBRARY`) and its export names (`EXPORTS`).
///
/// # Errors
/// A line outside the subset, no `LIBRARY` line, or no export.
pub fn parse(text: &str) -> Result<(String, Vec<String>), String> {
    let mut library = None;
    let mut exports = Vec::new();
    let mut in_exports = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("LIBRARY") => {
                library = words.next().map(str::to_owned);
                in_exports = false;
            }
            Some("EXPORTS") => in_exports = true,
            Some(name) if in_exports && words.next().is_none() => exports.push(name.to_owned()),
            _ => return Err(format!("line {}: cannot read `{line}`", n + 1)),
        }
    }
    let library = library.ok_or("no LIBRARY line")?;
    if exports.is_empty() {
        return Err("no EXPORTS".into());
    }
    Ok((library, exports))
}

/// The AMD64 import library (short import objects, one per export, code imports by name)
/// of the module and exports the `.def` file `text` names.
///
/// # Errors
/// What [`parse`] rejects, or a failure of the archive writer.
pub fn from_def(text: &str) -> Result<Vec<u8>, String> {
    let (library, exports) = parse(text)?;
    let exports: Vec<COFFShortExport> = exports
        .into_iter()
        .map(|name| COFFShortExport {
            name,
            ext_name: None,
            symbol_name: None,
            import_name: None,
            export_as: None,
            ordinal: 0,
            noname: false,
            data: false,
            private: false,
            constant: false,
        })
        .collect();
    let mut buf = Cursor::new(Vec::new());
    write_import_library(
        &mut buf,
        &library,
        &exports,
        MachineTypes::AMD64,
        false,
        false,
        &[],
    )
    .map_err(|e| format!("import library of {library}: {e}"))?;
    Ok(buf.into_inner())
}
