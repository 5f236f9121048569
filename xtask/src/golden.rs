//! The mirror's golden file (`xtask/mirror/golden.txt`): what the **real** `wdk-sys` 0.5.2
//! bindings say about exactly the items the mirror defines, and the comparison of the
//! mirror with it.
//!
//! The file is made by `cargo xtask check-windows --wdk-headers DIR --update-golden` from
//! the bindings wdk-sys's own build script generates (and its hand-ported `constants.rs`);
//! it is never edited by hand. One fact per line, sorted:
//!
//! ```text
//! fn ExFreePoolWithTag(P: PVOID, Tag: ULONG)
//! fn KeWaitForSingleObject(Object: PVOID, ...) -> NTSTATUS #[must_use]
//! const STATUS_SUCCESS: NTSTATUS = 0
//! type HANDLE = PVOID
//! struct _MDL derive(Clone, Copy, Debug) default
//! field _MDL.Next: *mut _MDL
//! layout _MDL size 48 align 8
//! offset _MDL.Next 0
//! static WdfFunctions: *const WDFFUNC link_name WdfFunctions_01031
//! missing EVT_WDF_DRIVER_UNLOAD
//! ```
//!
//! Types are written with their paths stripped (`c_int`, not `::core::ffi::c_int`) and
//! constant values as decimal integers after the cast the source applies. `missing` means
//! the mirror defines a name the real crate does not have.
//!
//! [`compare`] (a unit test, so every `cargo test` / CI run) checks every signature, value,
//! type, derive and field type the mirror states against the file; [`layout_asserts`]
//! gives `check-windows` compile-time assertions of the mirror's sizes, alignments and
//! field offsets against it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use quote::ToTokens;
use syn::{Expr, ForeignItem, Item, Lit, UnOp};

use crate::util::Result;

/// The golden file, relative to the workspace root.
pub const GOLDEN: &str = "xtask/mirror/golden.txt";

/// The mirror's files compared with the golden file (lib.rs holds `NT_SUCCESS` and the
/// WDF call macro, which are wdk-sys's own code, not bindings).
pub const MIRROR_FILES: [&str; 3] = ["types.rs", "constants.rs", "ntddk.rs"];

/// Facts by key (`kind name`), each the full line.
pub type Facts = BTreeMap<String, String>;

/// A type (or any tokens) as text, paths stripped to their last segment.
fn norm(tokens: &impl ToTokens) -> String {
    let text = tokens.to_token_stream().to_string();
    let mut out = text;
    for prefix in [
        ":: core :: option :: ",
        "core :: option :: ",
        ":: core :: ffi :: ",
        "core :: ffi :: ",
        ":: std :: os :: raw :: ",
        "crate :: types :: ",
        "crate :: ",
        "self :: ",
        "super :: ",
    ] {
        out = out.replace(prefix, "");
    }
    out.replace(" :: ", "::")
        .replace(",)", ")")
        .replace(",>", ">")
        .replace(", )", ")")
        .replace(", >", ">")
        .replace("* mut ", "*mut ")
        .replace("* const ", "*const ")
        .replace(" ,", ",")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace("( ", "(")
        .replace(" )", ")")
        .replace(" (", "(")
}

/// Integer width and signedness of a primitive or C type name.
fn primitive(name: &str) -> Option<(u32, bool)> {
    Some(match name {
        "i8" | "c_char" | "c_schar" => (8, true),
        "u8" | "c_uchar" => (8, false),
        "i16" | "c_short" => (16, true),
        "u16" | "c_ushort" => (16, false),
        "i32" | "c_int" | "c_long" => (32, true),
        "u32" | "c_uint" | "c_ulong" => (32, false),
        "i64" | "c_longlong" | "isize" => (64, true),
        "u64" | "c_ulonglong" | "usize" => (64, false),
        _ => return None,
    })
}

/// Width of `ty`, following `aliases`.
fn width(ty: &str, aliases: &BTreeMap<String, String>) -> Option<(u32, bool)> {
    let mut t = ty.to_owned();
    for _ in 0..16 {
        if let Some(w) = primitive(&t) {
            return Some(w);
        }
        t = aliases.get(&t)?.clone();
    }
    None
}

fn wrap(v: i128, (bits, signed): (u32, bool)) -> i128 {
    let m = 1i128 << bits;
    let u = v.rem_euclid(m);
    if signed && u >= m / 2 { u - m } else { u }
}

/// Evaluates the constant expressions bindgen and wdk-sys write: literals, `-`, `!`,
/// casts, parentheses, `| & ^ << >> + - *`.
fn eval(e: &Expr, aliases: &BTreeMap<String, String>) -> Option<i128> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => i.base10_parse::<i128>().ok(),
            Lit::Bool(b) => Some(i128::from(b.value)),
            _ => None,
        },
        Expr::Paren(p) => eval(&p.expr, aliases),
        Expr::Group(g) => eval(&g.expr, aliases),
        Expr::Unary(u) => {
            let v = eval(&u.expr, aliases)?;
            match u.op {
                UnOp::Neg(_) => Some(-v),
                UnOp::Not(_) => Some(!v),
                _ => None,
            }
        }
        Expr::Cast(c) => {
            let v = eval(&c.expr, aliases)?;
            let w = width(&norm(&c.ty), aliases)?;
            Some(wrap(v, w))
        }
        Expr::Binary(b) => {
            let (l, r) = (eval(&b.left, aliases)?, eval(&b.right, aliases)?);
            use syn::BinOp::*;
            Some(match b.op {
                BitOr(_) => l | r,
                BitAnd(_) => l & r,
                BitXor(_) => l ^ r,
                Shl(_) => l << r,
                Shr(_) => l >> r,
                Add(_) => l + r,
                Sub(_) => l - r,
                Mul(_) => l * r,
                _ => return None,
            })
        }
        _ => None,
    }
}

fn derives(attrs: &[syn::Attribute]) -> Vec<String> {
    let mut out = Vec::new();
    for a in attrs.iter().filter(|a| a.path().is_ident("derive")) {
        let _ = a.parse_nested_meta(|m| {
            if let Some(id) = m.path.get_ident() {
                out.push(id.to_string());
            }
            Ok(())
        });
    }
    out
}

fn has_attr(attrs: &[syn::Attribute], name: &str) -> bool {
    attrs.iter().any(|a| a.path().is_ident(name))
}

fn link_name(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| {
        let syn::Meta::NameValue(nv) = &a.meta else {
            return None;
        };
        if !nv.path.is_ident("link_name") {
            return None;
        }
        match &nv.value {
            Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s), ..
            }) => Some(s.value().trim_start_matches('\u{1}').to_owned()),
            _ => None,
        }
    })
}

/// Everything one set of source files says, by name.
#[derive(Default)]
struct Index {
    /// Facts by key.
    facts: Facts,
    /// Type aliases (name → type text), for constant widths.
    aliases: BTreeMap<String, String>,
    /// Constants whose value is an expression, evaluated once aliases are known.
    consts: Vec<(String, String, Expr)>,
    /// Types with an `impl Default`.
    default_impls: Vec<String>,
    /// Struct/union facts whose `default` flag is settled after all files are read.
    records: Vec<(String, String, Vec<String>)>,
}

impl Index {
    fn add_fn(&mut self, f: &syn::ForeignItemFn) {
        let name = f.sig.ident.to_string();
        let args: Vec<String> = f
            .sig
            .inputs
            .iter()
            .map(|a| match a {
                syn::FnArg::Typed(t) => format!("{}: {}", norm(&t.pat), norm(&t.ty)),
                syn::FnArg::Receiver(_) => "self".to_owned(),
            })
            .collect();
        let ret = match &f.sig.output {
            syn::ReturnType::Default => String::new(),
            syn::ReturnType::Type(_, t) => format!(" -> {}", norm(t)),
        };
        let must = if has_attr(&f.attrs, "must_use") {
            " #[must_use]"
        } else {
            ""
        };
        self.facts.insert(
            format!("fn {name}"),
            format!("fn {name}({}){ret}{must}", args.join(", ")),
        );
    }

    fn add_record(
        &mut self,
        kind: &str,
        name: String,
        attrs: &[syn::Attribute],
        fields: &syn::Fields,
    ) {
        let mut d = derives(attrs);
        d.retain(|x| x != "Default");
        let derives_default = derives(attrs).iter().any(|x| x == "Default");
        d.sort();
        for f in fields.iter() {
            let Some(id) = &f.ident else { continue };
            let field = id.to_string();
            if field.starts_with('_') && !field.starts_with("__bindgen") {
                continue;
            }
            self.facts.insert(
                format!("field {name}.{field}"),
                format!("field {name}.{field}: {}", norm(&f.ty)),
            );
        }
        let line = format!("{kind} {name} derive({})", d.join(", "));
        let mut extra = Vec::new();
        if derives_default {
            extra.push("default".to_owned());
        }
        self.records.push((name, line, extra));
    }

    fn add_items(&mut self, items: &[Item], module: Option<&str>) {
        let q = |n: &str| module.map_or_else(|| n.to_owned(), |m| format!("{m}::{n}"));
        // Modules whose items are re-exported with `pub use m::*` (wdk-sys's
        // constants.rs) count as the items of this level.
        let globbed: Vec<String> = items
            .iter()
            .filter_map(|i| match i {
                Item::Use(u) => {
                    let t = norm(&u.tree).replace(' ', "");
                    t.strip_suffix("::*").map(str::to_owned)
                }
                _ => None,
            })
            .collect();
        for item in items {
            match item {
                Item::ForeignMod(m) => {
                    for fi in &m.items {
                        match fi {
                            ForeignItem::Fn(f) => self.add_fn(f),
                            ForeignItem::Static(s) => {
                                let name = s.ident.to_string();
                                let link = link_name(&s.attrs)
                                    .map(|l| format!(" link_name {l}"))
                                    .unwrap_or_default();
                                self.facts.insert(
                                    format!("static {name}"),
                                    format!("static {name}: {}{link}", norm(&s.ty)),
                                );
                            }
                            _ => {}
                        }
                    }
                }
                Item::Const(c) => {
                    let name = q(&c.ident.to_string());
                    if name == "_" {
                        continue;
                    }
                    self.consts.push((name, norm(&c.ty), (*c.expr).clone()));
                }
                Item::Type(t) => {
                    let name = q(&t.ident.to_string());
                    let ty = norm(&t.ty);
                    self.aliases.insert(name.clone(), ty.clone());
                    if module.is_some() {
                        // `Type` inside a ModuleConsts module: also known by its bare
                        // name for the widths of that module's constants.
                        self.aliases.insert(t.ident.to_string(), ty.clone());
                    }
                    self.facts
                        .insert(format!("type {name}"), format!("type {name} = {ty}"));
                }
                Item::Struct(s) => {
                    self.add_record("struct", s.ident.to_string(), &s.attrs, &s.fields);
                }
                Item::Union(u) => {
                    let fields = syn::Fields::Named(u.fields.clone());
                    self.add_record("union", u.ident.to_string(), &u.attrs, &fields);
                }
                Item::Mod(m) => {
                    if let Some((_, inner)) = &m.content {
                        let name = m.ident.to_string();
                        if globbed.contains(&name) {
                            self.add_items(inner, module);
                        } else {
                            self.add_items(inner, Some(&name));
                        }
                    }
                }
                Item::Use(u) => {
                    // `pub use self::_X::Type as X;` (ModuleConsts aliases).
                    let text = norm(&u.tree);
                    if let Some((path, alias)) = text.split_once(" as ") {
                        let alias = alias.trim().to_owned();
                        let path = path.replace(' ', "");
                        self.aliases.insert(alias.clone(), path.clone());
                        self.facts
                            .insert(format!("type {alias}"), format!("type {alias} = {path}"));
                    }
                }
                Item::Impl(i) => {
                    let is_default = i.trait_.as_ref().is_some_and(|(_, p, _)| {
                        p.segments.last().is_some_and(|s| s.ident == "Default")
                    });
                    if is_default {
                        self.default_impls.push(norm(&i.self_ty));
                    }
                }
                _ => {}
            }
        }
    }

    fn finish(mut self) -> Facts {
        for (name, ty, expr) in std::mem::take(&mut self.consts) {
            let value = match eval(&expr, &self.aliases) {
                Some(v) => {
                    let v = width(&ty, &self.aliases).map_or(v, |w| wrap(v, w));
                    v.to_string()
                }
                None => norm(&expr),
            };
            self.facts.insert(
                format!("const {name}"),
                format!("const {name}: {ty} = {value}"),
            );
        }
        for (name, line, mut extra) in std::mem::take(&mut self.records) {
            if self.default_impls.contains(&name) && !extra.iter().any(|e| e == "default") {
                extra.push("default".to_owned());
            }
            let tail = if extra.is_empty() {
                String::new()
            } else {
                format!(" {}", extra.join(" "))
            };
            let kind = line.split(' ').next().unwrap_or("struct").to_owned();
            self.facts
                .insert(format!("{kind} {name}"), format!("{line}{tail}"));
        }
        self.facts
    }
}

fn parse_file(path: &Path) -> Result<syn::File> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    syn::parse_file(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The mirror's facts (from `dir`, the mirror's `wdk-sys/src`).
pub fn mirror_facts(dir: &Path) -> Result<Facts> {
    let mut index = Index::default();
    for file in MIRROR_FILES {
        index.add_items(&parse_file(&dir.join(file))?.items, None);
    }
    Ok(index.finish())
}

/// The bindgen layout assertions of `text`: (`layout X` / `offset X.f`, line). bindgen
/// writes `["Size of X"][size_of::<X>() - 48usize];`, rustfmt sometimes over three lines.
fn layout_facts(text: &str, out: &mut Facts) {
    let mut sizes: BTreeMap<String, (Option<u64>, Option<u64>)> = BTreeMap::new();
    let mut rest = text;
    while let Some(i) = rest.find('"') {
        rest = &rest[i + 1..];
        let Some(end) = rest.find('"') else { break };
        let label = &rest[..end];
        rest = &rest[end + 1..];
        let known = ["Size of ", "Alignment of ", "Offset of field: "]
            .iter()
            .any(|p| label.starts_with(p));
        if !known {
            continue;
        }
        let Some(close) = rest.find("usize]") else {
            break;
        };
        let expr = &rest[..close];
        let value = expr
            .rfind(" - ")
            .and_then(|j| expr[j + 3..].trim().parse::<u64>().ok());
        let Some(value) = value else { continue };
        if let Some(name) = label.strip_prefix("Size of ") {
            sizes.entry(name.to_owned()).or_default().0 = Some(value);
        } else if let Some(name) = label.strip_prefix("Alignment of ") {
            sizes.entry(name.to_owned()).or_default().1 = Some(value);
        } else if let Some(field) = label.strip_prefix("Offset of field: ") {
            let field = field.replace("::", ".");
            out.insert(format!("offset {field}"), format!("offset {field} {value}"));
        }
    }
    for (name, (size, align)) in sizes {
        if let (Some(size), Some(align)) = (size, align) {
            out.insert(
                format!("layout {name}"),
                format!("layout {name} size {size} align {align}"),
            );
        }
    }
}

/// The real bindings' facts for exactly the items of `mirror`: every fact of the same key,
/// the full field list and layout of each struct and union the mirror defines, and a
/// `missing` line for each mirror name the real crate lacks.
pub fn real_facts(sources: &[PathBuf], mirror: &Facts) -> Result<Facts> {
    let mut index = Index::default();
    let mut layouts = Facts::new();
    for path in sources {
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file = syn::parse_file(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        index.add_items(&file.items, None);
        layout_facts(&text, &mut layouts);
    }
    let all = index.finish();
    let mut out = Facts::new();
    for key in mirror.keys() {
        let (kind, name) = key.split_once(' ').unwrap_or(("", key));
        match kind {
            "field" => {}
            "struct" | "union" => match all.get(key) {
                Some(line) => {
                    out.insert(key.clone(), line.clone());
                    let prefix = format!("field {name}.");
                    for (k, v) in all.range(prefix.clone()..) {
                        if !k.starts_with(&prefix) {
                            break;
                        }
                        out.insert(k.clone(), v.clone());
                    }
                    if let Some(l) = layouts.get(&format!("layout {name}")) {
                        out.insert(format!("layout {name}"), l.clone());
                    }
                    let prefix = format!("offset {name}.");
                    for (k, v) in layouts.range(prefix.clone()..) {
                        if !k.starts_with(&prefix) {
                            break;
                        }
                        out.insert(k.clone(), v.clone());
                    }
                }
                None => {
                    out.insert(format!("missing {name}"), format!("missing {name}"));
                }
            },
            _ => match all.get(key) {
                Some(line) => {
                    out.insert(key.clone(), line.clone());
                }
                None => {
                    out.insert(format!("missing {name}"), format!("missing {name}"));
                }
            },
        }
    }
    Ok(out)
}

/// The golden file's text.
pub fn render(facts: &Facts, headers: &Path) -> String {
    let mut out = String::from(
        "# The real wdk-sys 0.5.2 bindings of exactly the items xtask/mirror defines.\n\
         # Generated by `cargo xtask check-windows --wdk-headers DIR --update-golden`; do not edit.\n",
    );
    let _ = writeln!(
        out,
        "# Headers: {} (see xtask/mirror/README.md for the recipe).",
        headers
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    );
    let mut lines: Vec<&String> = facts.values().collect();
    lines.sort();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    out
}

/// The fact lines of a golden file (comments dropped).
pub fn body(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect()
}

/// Golden facts by key.
fn golden_facts(text: &str) -> Facts {
    body(text)
        .into_iter()
        .map(|l| {
            let key = match l.split_once(' ') {
                Some(("missing", n)) => format!("missing {n}"),
                Some((kind, rest)) => {
                    let end = [rest.find('('), rest.find(' '), rest.find(": ")]
                        .into_iter()
                        .flatten()
                        .min()
                        .unwrap_or(rest.len());
                    format!("{kind} {}", &rest[..end])
                }
                None => l.to_owned(),
            };
            (key, l.to_owned())
        })
        .collect()
}

/// Every difference between the mirror and the golden file, one line each.
pub fn compare(mirror: &Facts, golden_text: &str) -> Vec<String> {
    let golden = golden_facts(golden_text);
    let mut out = Vec::new();
    for (key, line) in mirror {
        let name = key.split_once(' ').map_or(key.as_str(), |(_, n)| n);
        if golden.contains_key(&format!("missing {name}")) {
            out.push(format!(
                "`{name}` does not exist in the real bindings ({line})"
            ));
            continue;
        }
        match golden.get(key) {
            Some(real) if real == line => {}
            Some(real) => out.push(format!("mirror: {line}\n      real: {real}")),
            None => out.push(format!("not in the golden file: {line}")),
        }
    }
    out
}

/// `const _: () = assert!(...)` lines checking the mirror's layouts against the golden
/// file: size and alignment of every struct and union it defines, and the offset of every
/// field it declares.
pub fn layout_asserts(mirror: &Facts, golden_text: &str) -> String {
    let mut out = String::from(
        "// Generated by `cargo xtask check-windows` from xtask/mirror/golden.txt: the mirror's\n\
         // layouts against the real bindings'.\n",
    );
    for line in body(golden_text) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["layout", name, "size", size, "align", align]
                if mirror.contains_key(&format!("struct {name}"))
                    || mirror.contains_key(&format!("union {name}")) =>
            {
                let _ = writeln!(
                    out,
                    "const _: () = assert!(core::mem::size_of::<wdk_sys::{name}>() == {size});\n\
                     const _: () = assert!(core::mem::align_of::<wdk_sys::{name}>() == {align});"
                );
            }
            ["offset", field, offset] if mirror.contains_key(&format!("field {field}")) => {
                if let Some((ty, f)) = field.split_once('.') {
                    let _ = writeln!(
                        out,
                        "const _: () = assert!(core::mem::offset_of!(wdk_sys::{ty}, {f}) == {offset});"
                    );
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(src: &str) -> Facts {
        let mut index = Index::default();
        index.add_items(&syn::parse_file(src).unwrap().items, None);
        index.finish()
    }

    #[test]
    fn constants_are_evaluated_through_aliases_and_casts() {
        let f = facts(
            "pub type LONG = ::core::ffi::c_long; pub type NTSTATUS = LONG;\n\
             pub const STATUS_UNSUCCESSFUL: NTSTATUS = 0xC000_0001_u32 as NTSTATUS;\n\
             pub const S2: NTSTATUS = -1_073_741_823_i32;\n\
             pub const KEY: u32 = (0x0002_0000 | 0x1 | 0x8 | 0x10) & !0x0010_0000;\n",
        );
        assert_eq!(
            f["const STATUS_UNSUCCESSFUL"],
            "const STATUS_UNSUCCESSFUL: NTSTATUS = -1073741823"
        );
        assert_eq!(f["const S2"], "const S2: NTSTATUS = -1073741823");
        assert_eq!(f["const KEY"], "const KEY: u32 = 131097");
        assert_eq!(f["type NTSTATUS"], "type NTSTATUS = LONG");
    }

    #[test]
    fn a_wrong_signature_a_missing_item_and_a_derive_are_found() {
        let mirror = facts(
            "unsafe extern \"C\" { pub fn KeSetEvent(Event: PRKEVENT, Increment: KPRIORITY) -> LONG; }\n\
             pub type EVT_X = u32;\n\
             #[derive(Debug, Default, Copy, Clone)] pub struct _S { pub a: u32 }\n",
        );
        let golden = "fn KeSetEvent(Event: PRKEVENT, Increment: KPRIORITY, Wait: BOOLEAN) -> LONG\n\
                      missing EVT_X\n\
                      struct _S derive(Clone, Copy, Debug)\n\
                      field _S.a: u32\n";
        let diff = compare(&mirror, golden);
        assert_eq!(diff.len(), 3, "{diff:#?}");
        assert!(diff.iter().any(|d| d.contains("EVT_X")));
        let mirror = facts(
            "unsafe extern \"C\" { pub fn KeSetEvent(Event: PRKEVENT, Increment: KPRIORITY, Wait: BOOLEAN) -> LONG; }\n\
             #[derive(Debug, Copy, Clone)] pub struct _S { pub a: u32 }\n",
        );
        assert!(compare(&mirror, golden).is_empty());
    }

    #[test]
    fn bindgen_layout_assertions_are_read() {
        let mut out = Facts::new();
        layout_facts(
            "[\"Size of _MDL\"][::core::mem::size_of::<_MDL>() - 48usize];\n\
             [\n  \"Alignment of _MDL\",\n ][::core::mem::align_of::<_MDL>() - 8usize];\n\
             [\"Offset of field: _MDL::Next\"][::core::mem::offset_of!(_MDL, Next) - 0usize];",
            &mut out,
        );
        assert_eq!(out["layout _MDL"], "layout _MDL size 48 align 8");
        assert_eq!(out["offset _MDL.Next"], "offset _MDL.Next 0");
    }

    #[test]
    fn the_mirror_matches_the_golden_file() {
        let root = crate::root();
        let mirror = mirror_facts(&root.join("xtask/mirror/wdk-sys/src")).unwrap();
        let golden = fs::read_to_string(root.join(GOLDEN)).unwrap();
        let diff = compare(&mirror, &golden);
        assert!(
            diff.is_empty(),
            "the mirror differs from the real bindings ({GOLDEN}):\n  {}",
            diff.join("\n  ")
        );
    }
}
