//! `inf/vmballoon.inx` is a primitive-driver INF whose registry defaults are core's
//! (`docs/architecture.md`, "Registry parameters"; `docs/windows-memory.md` §4, §5.1). The INF is
//! parsed with a small INI reader: sections, `key = value` entries, `;` comments.

use std::collections::BTreeMap;

use vmballoon_core::config::Param;

/// One INF: section name (as written) → its lines, comments and blanks removed.
struct Inf {
    sections: Vec<(String, Vec<String>)>,
}

fn strip_comment(line: &str) -> &str {
    // `;` starts a comment unless it is inside a quoted string.
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

impl Inf {
    fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/inf/vmballoon.inx");
        let text = std::fs::read_to_string(path).expect("inf/vmballoon.inx");
        let mut sections: Vec<(String, Vec<String>)> = Vec::new();
        for raw in text.lines() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                sections.push((name.trim().to_owned(), Vec::new()));
            } else {
                let (_, lines) = sections.last_mut().expect("entry before any section");
                lines.push(line.to_owned());
            }
        }
        Self { sections }
    }

    /// Section lookup is case-insensitive, as in SetupAPI.
    fn section(&self, name: &str) -> &[String] {
        let found: Vec<_> = self
            .sections
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .collect();
        assert_eq!(found.len(), 1, "exactly one [{name}]");
        &found[0].1
    }

    fn has_section_starting(&self, prefix: &str) -> bool {
        self.sections.iter().any(|(n, _)| {
            n.to_ascii_lowercase()
                .starts_with(&prefix.to_ascii_lowercase())
        })
    }

    /// `key = value` entries of a section (keys case-insensitive, each at most once).
    fn entries(&self, name: &str) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        for line in self.section(name) {
            let (k, v) = line.split_once('=').expect("key = value");
            let old = map.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            assert!(old.is_none(), "duplicate {k} in [{name}]");
        }
        map
    }
}

fn int(v: &str) -> u32 {
    let v = v.trim();
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).expect("hex"),
        None => v.parse().expect("decimal"),
    }
}

fn fields(v: &str) -> Vec<String> {
    v.split(',').map(|f| f.trim().to_owned()).collect()
}

#[test]
fn version_section_is_complete_and_locked_down() {
    let inf = Inf::load();
    let v = inf.entries("Version");
    assert_eq!(v["signature"], "\"$WINDOWS NT$\"");
    assert_eq!(v["class"], "System");
    assert_eq!(
        v["classguid"].to_ascii_lowercase(),
        "{4d36e97d-e325-11ce-bfc1-08002be10318}"
    );
    assert!(v["provider"].starts_with('%'), "Provider from [Strings]");
    assert_eq!(v["catalogfile"], "vmballoon.cat");
    assert!(v.contains_key("driverver"), "DriverVer for stampinf");
    assert_eq!(v["pnplockdown"], "1");
}

#[test]
fn primitive_driver_shape() {
    let inf = Inf::load();
    // A primitive driver installs on no device (InfVerif 1297/1420/1423).
    assert!(!inf.has_section_starting("Manufacturer"));
    assert!(!inf.has_section_starting("DefaultUninstall"));
    // Only architecture-decorated DefaultInstall sections (InfVerif 1421).
    for (name, _) in &inf.sections {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("defaultinstall") {
            assert!(lower.starts_with("defaultinstall.ntamd64"), "[{name}]");
        }
    }
    let install = inf.entries("DefaultInstall.NTamd64");
    let files = inf.section(&install["copyfiles"]);
    assert_eq!(files, ["vmballoon.sys"]);
    assert_eq!(inf.entries("DestinationDirs")["defaultdestdir"], "13");
    assert!(
        inf.entries("SourceDisksFiles")
            .contains_key("vmballoon.sys")
    );
}

#[test]
fn service_starts_on_install_as_a_kernel_driver() {
    let inf = Inf::load();
    let services = inf.entries("DefaultInstall.NTamd64.Services");
    let add = fields(&services["addservice"]);
    assert_eq!(add[0], "vmballoon");
    let flags = int(&add[1]);
    assert_eq!(flags & 0x800, 0x800, "SPSVCINST_STARTSERVICE");
    assert_eq!(
        flags & 0x2,
        0,
        "no SPSVCINST_ASSOCSERVICE: there is no device"
    );
    let svc = inf.entries(&add[2]);
    assert_eq!(int(&svc["servicetype"]), 1, "SERVICE_KERNEL_DRIVER");
    // System or auto start: the balloon runs again after a reboot.
    assert!(matches!(int(&svc["starttype"]), 1 | 2));
    assert_eq!(int(&svc["errorcontrol"]), 1);
    assert_eq!(svc["servicebinary"], r"%13%\vmballoon.sys");
    assert!(svc.contains_key("addreg"));
}

#[test]
fn parameters_defaults_equal_core_defaults() {
    let inf = Inf::load();
    let services = inf.entries("DefaultInstall.NTamd64.Services");
    let svc = inf.entries(&fields(&services["addservice"])[2]);
    let mut seen = BTreeMap::new();
    for line in inf.section(&svc["addreg"]) {
        let f = fields(line);
        assert_eq!(f.len(), 5, "{line}");
        assert_eq!(f[0], "HKR");
        assert_eq!(f[1], "Parameters");
        let flags = int(&f[3]);
        // FLG_ADDREG_TYPE_DWORD (0x00010001), optionally with NOCLOBBER (0x2).
        assert_eq!(flags & !0x2, 0x0001_0001, "{line}: REG_DWORD");
        let param = Param::from_name(&f[2]).unwrap_or_else(|| panic!("unknown value {}", f[2]));
        assert!(seen.insert(f[2].clone(), int(&f[4])).is_none(), "{line}");
        assert_eq!(int(&f[4]), param.default_value(), "{line}");
    }
    for p in Param::ALL {
        assert!(seen.contains_key(p.name()), "{} missing", p.name());
    }
}

#[test]
fn every_string_token_is_defined() {
    let inf = Inf::load();
    let strings = inf.entries("Strings");
    for (_, lines) in &inf.sections {
        for line in lines {
            let mut parts = line.split('%');
            parts.next();
            while let (Some(token), Some(_)) = (parts.next(), parts.next()) {
                if token.is_empty() || token.chars().all(|c| c.is_ascii_digit()) {
                    continue; // %% or a DIRID such as %13%
                }
                assert!(
                    strings.contains_key(&token.to_ascii_lowercase()),
                    "%{token}% in `{line}`"
                );
            }
        }
    }
}
