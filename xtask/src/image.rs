//! The checks `cargo xtask build-sys` runs on the linked `vmballoon.sys`: what the kernel
//! loader requires and a reviewer looks for, and the stack budget.
//!
//! **Loader and hardening:** machine AMD64, subsystem NATIVE, the entry point is
//! `FxDriverEntry`, the PE checksum is set and correct (recomputed here), no section is
//! both writable and executable, and `DllCharacteristics` has NX_COMPAT, DYNAMIC_BASE and
//! FORCE_INTEGRITY.
//!
//! **Imports:** only from `ntoskrnl.exe`, `HAL.dll` and `WDFLDR.SYS`, and no data import:
//! every reference in the code to an import-address-table slot must be an indirect `call`
//! or `jmp` through it (an import thunk). Code that loads a slot's contents as data (how
//! `PsThreadType` and the like are used) fails, and so does any import named in
//! [`crate::windows::DATA_EXPORTS`].
//!
//! **Stack budget.** Windows x64 kernel threads have a 24 KiB stack (12 KiB on x86), shared
//! with the kernel code the driver calls and the interrupts taken on it. Every function is
//! located by the image's `.pdata`, named from the link map, and its frame measured from
//! the disassembly of its prologue: return address + 8 per `push` + the `sub rsp`
//! amount (or the `mov eax, N; call __chkstk; sub rsp, rax` amount); the unwind codes of
//! `.xdata` must give the same figure, or the analysis itself is reported broken. Direct
//! calls and tail jumps give the call graph, from which the deepest path is reported from
//! each entry point the kernel calls (the worker thread, `FxDriverEntry`, the unload
//! routine, the power callback). Indirect calls are not followed: the only ones in the
//! image are through the WDF function table and function pointers the kernel calls back.
//! Any frame above [`FRAME_BUDGET`] bytes, or recursion, is a violation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, ImageThunkData, PeFile64};

use crate::util::Result;
use crate::windows::DATA_EXPORTS;

/// The largest stack frame allowed for any function of the image.
pub const FRAME_BUDGET: u64 = 1024;

/// The modules the image may import from (case-insensitive).
pub const ALLOWED_IMPORTS: [&str; 3] = ["ntoskrnl.exe", "HAL.dll", "WDFLDR.SYS"];

/// Entry points the kernel calls, for the deepest-path report: (label, map-name fragment).
const ROOTS: [(&str, &str); 4] = [
    ("worker thread", "6worker11worker_main"),
    ("FxDriverEntry (load)", "FxDriverEntry"),
    ("unload (EvtDriverUnload)", "17evt_driver_unload"),
    ("power callback", "20power_state_callback"),
];

/// One function of the image: a `.pdata` entry.
#[derive(Clone, Debug)]
pub struct Function {
    /// Start RVA.
    pub start: u32,
    /// Demangled name from the map (or `sub_<rva>`).
    pub name: String,
    /// Bytes of stack the function takes, return address included.
    pub frame: u64,
    /// Functions it calls or tail-jumps to directly (start RVAs).
    pub callees: BTreeSet<u32>,
}

/// What the checks found.
pub struct Report {
    /// Every failed check, one line each.
    pub violations: Vec<String>,
    /// Facts shown in the summary.
    info: Vec<String>,
    /// Functions by start RVA.
    functions: BTreeMap<u32, Function>,
    /// The deepest path per root: (label, path of start RVAs, total bytes).
    paths: Vec<(String, Vec<u32>, u64)>,
    /// Named RVAs for the emulator.
    symbols: BTreeMap<String, u32>,
    /// RVAs of every CPUID and every `in` instruction.
    cpuid: Vec<u32>,
    port_in: Vec<u32>,
}

/// The symbols of a `/MAP` file: (RVA, mangled name), publics and statics, plus the
/// preferred image base.
pub fn parse_map(text: &str) -> Result<(u64, Vec<(u32, String)>)> {
    let base = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Preferred load address is "))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or("map: no preferred load address")?;
    let mut symbols = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [section, name, va, ..] = words.as_slice() else {
            continue;
        };
        let is_address = section.len() == 13 && section.as_bytes().get(4) == Some(&b':');
        let Ok(va) = u64::from_str_radix(va, 16) else {
            continue;
        };
        if !is_address || va < base {
            continue;
        }
        if let Ok(rva) = u32::try_from(va - base) {
            symbols.push((rva, (*name).to_owned()));
        }
    }
    Ok((base, symbols))
}

/// The PE checksum of `image` (the `CheckSumMappedFile` algorithm): 16-bit one's-complement
/// style sum of the file with the checksum field taken as 0, folded, plus the file length.
pub fn pe_checksum(image: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, chunk) in image.chunks(2).enumerate() {
        let offset = i * 2;
        if offset == checksum_offset || offset == checksum_offset + 2 {
            continue;
        }
        let word = u64::from(chunk[0]) | u64::from(chunk.get(1).copied().unwrap_or(0)) << 8;
        sum += word;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(image.len() as u32)
}

fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// Frame size (bytes below the return address) from the unwind codes at `rva`.
fn unwind_frame(pe_file: &PeFile64<'_>, data: &[u8], rva: u32) -> Option<(u64, bool)> {
    let bytes = pe_file.section_table().pe_data_at(data, rva)?;
    let (flags, count) = (bytes.first()? >> 3, *bytes.get(2)? as usize);
    let codes = bytes.get(4..4 + count * 2)?;
    let slot = |i: usize| -> Option<u64> {
        Some(u64::from(u16::from_le_bytes([
            *codes.get(i * 2)?,
            *codes.get(i * 2 + 1)?,
        ])))
    };
    let mut frame = 0;
    let mut i = 0;
    while i < count {
        let op = codes.get(i * 2 + 1)?;
        let (code, info) = (op & 0x0f, u64::from(op >> 4));
        match code {
            0 => frame += 8,
            1 if info == 0 => {
                frame += slot(i + 1)? * 8;
                i += 1;
            }
            1 => {
                frame += slot(i + 1)? | slot(i + 2)? << 16;
                i += 2;
            }
            2 => frame += info * 8 + 8,
            3 => {}
            4 | 8 => i += 1,
            5 | 9 => i += 2,
            10 => frame += if info == 0 { 40 } else { 48 },
            _ => return None,
        }
        i += 1;
    }
    // UNW_FLAG_CHAININFO: the frame is the parent's (a split-off part of a function).
    Some((frame, flags & 0x4 != 0))
}

/// Frame size (bytes below the return address) from the prologue's instructions.
fn prologue_frame(code: &[u8], rva: u32, chkstk: Option<u32>) -> u64 {
    let mut decoder = Decoder::with_ip(64, code, u64::from(rva), DecoderOptions::NONE);
    let mut frame = 0;
    let mut pending_eax: Option<u64> = None;
    let mut ins = Instruction::default();
    for _ in 0..24 {
        if !decoder.can_decode() {
            break;
        }
        decoder.decode_out(&mut ins);
        match ins.mnemonic() {
            Mnemonic::Push if ins.op0_kind() == OpKind::Register => frame += 8,
            Mnemonic::Sub if ins.op0_register() == Register::RSP => {
                if ins.op1_kind() == OpKind::Register {
                    frame += pending_eax.take().unwrap_or(0);
                } else {
                    frame += ins.immediate(1);
                }
            }
            Mnemonic::Mov
                if ins.op0_register() == Register::EAX && ins.op1_kind() == OpKind::Immediate32 =>
            {
                pending_eax = Some(ins.immediate(1));
            }
            Mnemonic::Call
                if chkstk.is_some_and(|c| ins.near_branch_target() == u64::from(c))
                    && pending_eax.is_some() => {}
            Mnemonic::Lea if ins.op0_register() == Register::RBP => {}
            Mnemonic::Mov if ins.op0_register() == Register::RBP => {}
            Mnemonic::Movaps | Mnemonic::Movdqa if ins.op0_kind() == OpKind::Memory => {}
            _ => break,
        }
    }
    frame
}

/// Decodes a whole function: direct call / tail-jump targets, CPUID and `in` sites, and
/// RIP-relative references to import slots that are not `call`/`jmp` through them.
struct Scan {
    targets: BTreeSet<u32>,
    cpuid: Vec<u32>,
    port_in: Vec<u32>,
    slot_loads: Vec<(u32, u32)>,
}

fn scan(code: &[u8], start: u32, slots: &BTreeMap<u32, String>) -> Scan {
    let mut out = Scan {
        targets: BTreeSet::new(),
        cpuid: Vec::new(),
        port_in: Vec::new(),
        slot_loads: Vec::new(),
    };
    let mut decoder = Decoder::with_ip(64, code, u64::from(start), DecoderOptions::NONE);
    let mut ins = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut ins);
        let ip = ins.ip() as u32;
        match ins.code() {
            Code::Call_rel32_64 | Code::Jmp_rel32_64 | Code::Jmp_rel8_64 => {
                out.targets.insert(ins.near_branch_target() as u32);
            }
            Code::Cpuid => out.cpuid.push(ip),
            Code::In_EAX_DX | Code::In_AL_DX | Code::In_AX_DX => out.port_in.push(ip),
            _ => {}
        }
        if ins.is_ip_rel_memory_operand() {
            let target = ins.ip_rel_memory_address() as u32;
            let through = matches!(ins.code(), Code::Call_rm64 | Code::Jmp_rm64);
            if slots.contains_key(&target) && !through {
                out.slot_loads.push((ip, target));
            }
        }
    }
    out
}

/// Runs every check on `image` with its link `map`.
#[allow(
    clippy::too_many_lines,
    reason = "one pass over the image, check by check, in the order of the module docs"
)]
pub fn check(image: &[u8], map: &str) -> Result<Report> {
    let mut violations = Vec::new();
    let mut info = Vec::new();
    let pe_file = PeFile64::parse(image).map_err(|e| format!("not a PE32+ image: {e}"))?;
    let nt = pe_file.nt_headers();
    let opt = nt.optional_header();
    let sections = pe_file.section_table();
    let (_, map_symbols) = parse_map(map)?;
    let by_rva: BTreeMap<u32, String> = map_symbols
        .iter()
        .map(|(rva, name)| (*rva, name.clone()))
        .collect();
    let rva_of = |fragment: &str| -> Option<u32> {
        map_symbols
            .iter()
            .find(|(_, n)| n == fragment || n.contains(fragment))
            .map(|(r, _)| *r)
    };

    // --- loader and hardening ---
    let machine = nt.file_header().machine.get(LE);
    if machine != pe::IMAGE_FILE_MACHINE_AMD64 {
        violations.push(format!("machine {machine:#x}, not AMD64"));
    }
    if opt.subsystem() != pe::IMAGE_SUBSYSTEM_NATIVE {
        violations.push(format!("subsystem {}, not NATIVE (1)", opt.subsystem()));
    }
    let entry = opt.address_of_entry_point();
    match rva_of("FxDriverEntry") {
        Some(rva) if rva == entry => info.push(format!("entry point FxDriverEntry ({entry:#x})")),
        other => violations.push(format!(
            "entry point {entry:#x} is not FxDriverEntry ({other:x?})"
        )),
    }
    let checksum_offset = pe_file.dos_header().nt_headers_offset() as usize + 4 + 20 + 64;
    let stored = opt.check_sum();
    let computed = pe_checksum(image, checksum_offset);
    if stored == 0 || stored != computed {
        violations.push(format!(
            "PE checksum {stored:#010x}, computed {computed:#010x}"
        ));
    } else {
        info.push(format!("PE checksum {stored:#010x} (verified)"));
    }
    for s in sections.iter() {
        let c = s.characteristics.get(LE);
        let name = String::from_utf8_lossy(s.raw_name())
            .trim_end_matches('\0')
            .to_owned();
        let w = c & pe::IMAGE_SCN_MEM_WRITE != 0;
        let x = c & pe::IMAGE_SCN_MEM_EXECUTE != 0;
        let r = c & pe::IMAGE_SCN_MEM_READ != 0;
        info.push(format!(
            "section {name:8} {}{}{}",
            if r { 'R' } else { '-' },
            if w { 'W' } else { '-' },
            if x { 'X' } else { '-' }
        ));
        if w && x {
            violations.push(format!("section {name} is writable and executable"));
        }
    }
    let dll = opt.dll_characteristics();
    for (flag, name) in [
        (pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT, "NX_COMPAT"),
        (pe::IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE, "DYNAMIC_BASE"),
        (
            pe::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY,
            "FORCE_INTEGRITY",
        ),
    ] {
        if dll & flag == 0 {
            violations.push(format!("DllCharacteristics {dll:#x} lacks {name}"));
        }
    }
    info.push(format!("DllCharacteristics {dll:#06x}"));

    // --- imports ---
    let mut slots: BTreeMap<u32, String> = BTreeMap::new();
    let mut modules: BTreeMap<String, usize> = BTreeMap::new();
    if let Some(table) = pe_file
        .import_table()
        .map_err(|e| format!("imports: {e}"))?
    {
        let mut descriptors = table.descriptors().map_err(|e| format!("imports: {e}"))?;
        while let Some(d) = descriptors.next().map_err(|e| format!("imports: {e}"))? {
            let module = String::from_utf8_lossy(
                table
                    .name(d.name.get(LE))
                    .map_err(|e| format!("imports: {e}"))?,
            )
            .into_owned();
            if !ALLOWED_IMPORTS
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&module))
            {
                violations.push(format!(
                    "imports from {module} (allowed: {ALLOWED_IMPORTS:?})"
                ));
            }
            let lookup = match d.original_first_thunk.get(LE) {
                0 => d.first_thunk.get(LE),
                a => a,
            };
            let mut thunks = table.thunks(lookup).map_err(|e| format!("imports: {e}"))?;
            let mut slot = d.first_thunk.get(LE);
            while let Some(t) = thunks
                .next::<pe::ImageNtHeaders64>()
                .map_err(|e| format!("imports: {e}"))?
            {
                let name = if t.is_ordinal() {
                    format!("#{}", t.ordinal())
                } else {
                    let (_, n) = table
                        .hint_name(t.address())
                        .map_err(|e| format!("imports: {e}"))?;
                    String::from_utf8_lossy(n).into_owned()
                };
                if DATA_EXPORTS.contains(&name.as_str()) {
                    violations.push(format!("imports the data export {module}!{name}"));
                }
                slots.insert(slot, format!("{module}!{name}"));
                slot += 8;
                *modules.entry(module.clone()).or_default() += 1;
            }
        }
    }
    info.push(format!(
        "imports: {}",
        modules
            .iter()
            .map(|(m, n)| format!("{m} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // --- functions, frames, calls ---
    let pdata = pe_file
        .data_directories()
        .get(pe::IMAGE_DIRECTORY_ENTRY_EXCEPTION)
        .map(|d| d.address_range())
        .ok_or("no exception directory (.pdata)")?;
    let pdata_bytes = sections
        .pe_data_at(image, pdata.0)
        .and_then(|b| b.get(..pdata.1 as usize))
        .ok_or(".pdata outside the image")?;
    let chkstk = rva_of("__chkstk");
    let mut functions = BTreeMap::new();
    let mut cpuid = Vec::new();
    let mut port_in = Vec::new();
    let mut chained = Vec::new();
    for entry in pdata_bytes.chunks_exact(12) {
        let word =
            |i: usize| u32::from_le_bytes([entry[i], entry[i + 1], entry[i + 2], entry[i + 3]]);
        let (start, end, unwind) = (word(0), word(4), word(8));
        let code = sections
            .pe_data_at(image, start)
            .and_then(|b| b.get(..(end - start) as usize))
            .ok_or_else(|| format!("function {start:#x} outside the image"))?;
        let name = by_rva
            .get(&start)
            .map_or_else(|| format!("sub_{start:x}"), |n| demangle(n));
        let (unwind_bytes, is_chained) = unwind_frame(&pe_file, image, unwind)
            .ok_or_else(|| format!("{name}: unreadable unwind info"))?;
        let prologue = prologue_frame(code, start, chkstk);
        if is_chained {
            chained.push(start);
        } else if prologue != unwind_bytes {
            violations.push(format!(
                "{name}: prologue says {prologue} bytes, unwind codes {unwind_bytes}: stack analysis broken"
            ));
        }
        let s = scan(code, start, &slots);
        for (ip, slot) in &s.slot_loads {
            violations.push(format!(
                "{name}+{:#x} reads the import slot of {} as data (a data import)",
                ip - start,
                slots.get(slot).map_or("?", String::as_str)
            ));
        }
        cpuid.extend(&s.cpuid);
        port_in.extend(&s.port_in);
        functions.insert(
            start,
            Function {
                start,
                name,
                frame: unwind_bytes + 8,
                callees: s.targets,
            },
        );
    }
    // Keep only edges to function starts (calls into import thunks and local jumps are not
    // calls); a chained part belongs to its parent's frame.
    let starts: BTreeSet<u32> = functions.keys().copied().collect();
    for f in functions.values_mut() {
        let own = f.start;
        f.callees.retain(|t| *t != own && starts.contains(t));
    }
    for f in functions.values() {
        if f.frame > FRAME_BUDGET {
            violations.push(format!(
                "{}: {} byte frame, over the {FRAME_BUDGET}-byte budget",
                f.name, f.frame
            ));
        }
    }
    let mut paths = Vec::new();
    for (label, fragment) in ROOTS {
        let Some(root) = rva_of(fragment) else {
            violations.push(format!("no `{fragment}` in the map (root {label})"));
            continue;
        };
        let mut memo = BTreeMap::new();
        let mut on_path = BTreeSet::new();
        let (total, path) = deepest(root, &functions, &mut memo, &mut on_path, &mut violations);
        paths.push((label.to_owned(), path, total));
    }
    let mut symbols = BTreeMap::new();
    for (key, fragment) in [
        ("FxDriverEntry", "FxDriverEntry"),
        ("DriverEntry", "DriverEntry"),
        ("AuxKlibInitialize", "AuxKlibInitialize"),
        (
            "AuxKlibQueryModuleInformation",
            "AuxKlibQueryModuleInformation",
        ),
        ("worker_main", "6worker11worker_main"),
        ("evt_driver_unload", "17evt_driver_unload"),
        ("power_state_callback", "20power_state_callback"),
    ] {
        match rva_of(fragment) {
            Some(rva) => {
                symbols.insert(key.to_owned(), rva);
            }
            None => violations.push(format!("no `{fragment}` in the map")),
        }
    }
    info.push(format!(
        "{} functions ({} split-off parts); CPUID at {} site(s), `in` at {} site(s)",
        functions.len(),
        chained.len(),
        cpuid.len(),
        port_in.len()
    ));
    Ok(Report {
        violations,
        info,
        functions,
        paths,
        symbols,
        cpuid,
        port_in,
    })
}

/// The deepest path from `f`: (bytes, start RVAs). Recursion is reported, and cut.
fn deepest(
    f: u32,
    functions: &BTreeMap<u32, Function>,
    memo: &mut BTreeMap<u32, (u64, Vec<u32>)>,
    on_path: &mut BTreeSet<u32>,
    violations: &mut Vec<String>,
) -> (u64, Vec<u32>) {
    if let Some(done) = memo.get(&f) {
        return done.clone();
    }
    let Some(func) = functions.get(&f) else {
        return (0, Vec::new());
    };
    on_path.insert(f);
    let mut best: (u64, Vec<u32>) = (0, Vec::new());
    for &callee in &func.callees {
        if on_path.contains(&callee) {
            violations.push(format!(
                "recursion: {} calls {} (stack depth unbounded)",
                func.name,
                functions.get(&callee).map_or("?", |c| c.name.as_str())
            ));
            continue;
        }
        let sub = deepest(callee, functions, memo, on_path, violations);
        if sub.0 > best.0 {
            best = sub;
        }
    }
    on_path.remove(&f);
    let mut path = vec![f];
    path.extend(best.1);
    let result = (func.frame + best.0, path);
    memo.insert(f, result.clone());
    result
}

impl Report {
    /// The stack budget report (`target/build-sys/stack.txt`).
    pub fn stack_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Stack budget: frames include the return address; budget {FRAME_BUDGET} bytes per \
             frame; a kernel thread's stack is 24 KiB on x64.\n\nLargest frames:"
        );
        let mut frames: Vec<&Function> = self.functions.values().collect();
        frames.sort_by(|a, b| b.frame.cmp(&a.frame).then(a.start.cmp(&b.start)));
        for f in frames.iter().take(12) {
            let _ = writeln!(out, "  {:6} B  {}", f.frame, f.name);
        }
        for (label, path, total) in &self.paths {
            let _ = writeln!(out, "\nDeepest path from the {label}: {total} bytes");
            let mut sum = 0;
            for rva in path {
                if let Some(f) = self.functions.get(rva) {
                    sum += f.frame;
                    let _ = writeln!(out, "  {:6} B  (total {:6})  {}", f.frame, sum, f.name);
                }
            }
        }
        out
    }

    /// The summary printed by `build-sys`.
    pub fn summary(&self) -> String {
        let mut out = String::from("image checks:\n");
        for line in &self.info {
            let _ = writeln!(out, "  {line}");
        }
        let largest = self.functions.values().max_by_key(|f| f.frame);
        if let Some(f) = largest {
            let _ = writeln!(out, "  largest frame: {} B ({})", f.frame, f.name);
        }
        for (label, path, total) in &self.paths {
            let _ = writeln!(
                out,
                "  deepest path from the {label}: {total} B over {} functions",
                path.len()
            );
        }
        out
    }

    /// What the emulator needs, as JSON: RVAs of the named functions, of every CPUID and
    /// every `in` instruction, and the stack figures.
    pub fn facts_json(&self) -> String {
        let worker = self
            .paths
            .iter()
            .find(|(l, ..)| l == "worker thread")
            .map_or(0, |p| p.2);
        let value = serde_json::json!({
            "symbols": self.symbols,
            "cpuid": self.cpuid,
            "in": self.port_in,
            "largest_frame": self.functions.values().map(|f| f.frame).max().unwrap_or(0),
            "worker_stack_depth": worker,
        });
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_lines_give_rvas() {
        let map = " Preferred load address is 0000000180000000\n\
                   \x20 Address  Publics by Value  Rva+Base  Lib:Object\n\
                   \x20 0001:00004770       DriverEntry                0000000180005770     x.o\n\
                   \x20 0002:00000ef0       __imp_EtwRegister          000000018000bef0     ntoskrnl:ntoskrnl.exe\n";
        let (base, symbols) = parse_map(map).unwrap();
        assert_eq!(base, 0x1_8000_0000);
        assert_eq!(
            symbols,
            [
                (0x5770, "DriverEntry".to_owned()),
                (0xbef0, "__imp_EtwRegister".to_owned())
            ]
        );
    }

    #[test]
    fn checksum_skips_its_own_field_and_adds_the_length() {
        // Words 1 + 2 (the field at offset 2..6 is skipped) + 3, plus 8 bytes of length.
        let image = [1, 0, 0xff, 0xff, 0xff, 0xff, 3, 0];
        assert_eq!(pe_checksum(&image, 2), 1 + 3 + 8);
        // Carries fold back into the low 16 bits.
        let image = [0xff, 0xff, 0, 0, 0, 0, 0x02, 0x00];
        assert_eq!(pe_checksum(&image, 2), 0x0002 + 8);
    }

    #[test]
    fn prologues_are_measured_with_and_without_chkstk() {
        // push rbx; push rsi; sub rsp, 0x28; ret
        let small = [0x53, 0x56, 0x48, 0x83, 0xec, 0x28, 0xc3];
        assert_eq!(prologue_frame(&small, 0x1000, None), 16 + 0x28);
        // push rbp; mov eax, 0x1418; call +0 (the __chkstk thunk at 0x100b); sub rsp, rax
        let large = [
            0x55, 0xb8, 0x18, 0x14, 0, 0, 0xe8, 0, 0, 0, 0, 0x48, 0x29, 0xc4, 0xc3,
        ];
        assert_eq!(prologue_frame(&large, 0x1000, Some(0x100b)), 8 + 0x1418);
    }
}
