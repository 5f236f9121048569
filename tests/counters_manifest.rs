//! `inf/vmballoon-counters.man`, the counter manifest of the `VM Balloon` set
//! (`docs/windows-memory.md §9.6`), against the layout the driver hands PCW
//! (`vmballoon_nt::counters`): well-formed XML, one kernel-mode provider and counter set
//! with the fixed GUIDs and name, and exactly the layout's counters, each with its id,
//! name, uri and type. The mutation tests show the check fails when a counter is missing
//! from either side.

use std::collections::BTreeMap;

use vmballoon_nt::counters::{
    COUNTER_SET_GUID, COUNTER_SET_NAME, PROVIDER_GUID, PcwType, PerfCounter,
};

const COUNTERS_NS: &str = "http://schemas.microsoft.com/win/2005/12/counters";

fn manifest() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/inf/vmballoon-counters.man");
    std::fs::read_to_string(path).expect("inf/vmballoon-counters.man")
}

/// One `<counter>` as the manifest has it.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    name: String,
    uri: String,
    kind: String,
}

fn attr<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Result<&'a str, String> {
    node.attribute(name)
        .ok_or_else(|| format!("<{}> has no {name}", node.tag_name().name()))
}

fn one<'a, 'i>(
    parent: roxmltree::Node<'a, 'i>,
    tag: &str,
) -> Result<roxmltree::Node<'a, 'i>, String> {
    let found: Vec<_> = parent
        .descendants()
        .filter(|n| n.is_element() && n.has_tag_name((COUNTERS_NS, tag)))
        .collect();
    match found.as_slice() {
        [n] => Ok(*n),
        other => Err(format!("{} <{tag}> elements, expected one", other.len())),
    }
}

/// Every difference between `text` and `layout`, or the XML error.
fn check(text: &str, layout: &[PerfCounter]) -> Result<(), Vec<String>> {
    let doc = roxmltree::Document::parse(text).map_err(|e| vec![format!("not XML: {e}")])?;
    let mut problems = Vec::new();
    let root = doc.root_element();
    let provider = one(root, "provider").map_err(|e| vec![e])?;
    let set = one(provider, "counterSet").map_err(|e| vec![e])?;
    let expect = |node, name: &str, want: &str, problems: &mut Vec<String>| match attr(node, name) {
        Ok(v) if v == want => {}
        Ok(v) => problems.push(format!("{name} is {v:?}, expected {want:?}")),
        Err(e) => problems.push(e),
    };
    expect(provider, "providerType", "kernelMode", &mut problems);
    expect(
        provider,
        "applicationIdentity",
        "vmballoon.sys",
        &mut problems,
    );
    expect(
        provider,
        "providerGuid",
        &format!("{{{PROVIDER_GUID}}}"),
        &mut problems,
    );
    expect(
        set,
        "guid",
        &format!("{{{COUNTER_SET_GUID}}}"),
        &mut problems,
    );
    expect(set, "name", COUNTER_SET_NAME, &mut problems);
    expect(set, "instances", "single", &mut problems);

    // Kernel mode: PCW reads each counter from a field of a declared structure (one here:
    // the whole data block).
    let data_struct = one(set, "struct")
        .and_then(|n| attr(n, "name"))
        .map_err(|e| vec![e])?;
    let mut manifest: BTreeMap<u16, Entry> = BTreeMap::new();
    for node in set
        .children()
        .filter(|n| n.is_element() && n.has_tag_name((COUNTERS_NS, "counter")))
    {
        let entry = (|| -> Result<(u16, Entry), String> {
            let id = attr(node, "id")?;
            let id: u16 = id.parse().map_err(|_| format!("counter id {id:?}"))?;
            if attr(node, "struct")? != data_struct {
                return Err(format!("counter {id} is not read from {data_struct}"));
            }
            attr(node, "field")?;
            Ok((
                id,
                Entry {
                    name: attr(node, "name")?.to_owned(),
                    uri: attr(node, "uri")?.to_owned(),
                    kind: attr(node, "type")?.to_owned(),
                },
            ))
        })();
        match entry {
            Ok((id, e)) => {
                if let Some(old) = manifest.insert(id, e) {
                    problems.push(format!("counter id {id} twice ({})", old.name));
                }
            }
            Err(e) => problems.push(e),
        }
    }
    for c in layout {
        let want = Entry {
            name: c.name().to_owned(),
            uri: c.uri().to_owned(),
            kind: c.pcw_type().manifest_name().to_owned(),
        };
        match manifest.remove(&c.id()) {
            None => problems.push(format!(
                "{} (id {}) missing from the manifest",
                c.name(),
                c.id()
            )),
            Some(got) if got != want => {
                problems.push(format!("id {}: manifest {got:?}, layout {want:?}", c.id()))
            }
            Some(_) => {}
        }
    }
    for (id, e) in manifest {
        problems.push(format!("{} (id {id}) is not in the layout", e.name));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// `text` without the `<counter .../>` element whose id is `id`.
fn without_counter(text: &str, id: u16) -> String {
    let marker = format!("id=\"{id}\"");
    let at = text.find(&marker).expect("the counter is in the manifest");
    let start = text[..at]
        .rfind("<counter")
        .expect("its element starts before");
    let end = at + text[at..].find("/>").expect("and ends after") + 2;
    format!("{}{}", &text[..start], &text[end..])
}

#[test]
fn the_manifest_describes_exactly_the_layout() {
    assert_eq!(check(&manifest(), &PerfCounter::ALL), Ok(()));
}

#[test]
fn a_counter_missing_from_the_manifest_fails() {
    let last = PerfCounter::ALL[PerfCounter::ALL.len() - 1];
    let text = without_counter(&manifest(), last.id());
    let problems = check(&text, &PerfCounter::ALL).unwrap_err();
    assert_eq!(
        problems,
        [format!(
            "{} (id {}) missing from the manifest",
            last.name(),
            last.id()
        )]
    );
    // Every counter, not just the last: removing any one is caught.
    for c in PerfCounter::ALL {
        let text = without_counter(&manifest(), c.id());
        assert!(check(&text, &PerfCounter::ALL).is_err(), "{}", c.name());
    }
}

#[test]
fn a_counter_missing_from_the_layout_fails() {
    let (last, rest) = PerfCounter::ALL.split_last().unwrap();
    let problems = check(&manifest(), rest).unwrap_err();
    assert_eq!(
        problems,
        [format!(
            "{} (id {}) is not in the layout",
            last.name(),
            last.id()
        )]
    );
}

#[test]
fn a_changed_type_name_or_guid_fails() {
    let text = manifest();
    let rate = PerfCounter::FramesLocked;
    let retyped = text.replacen(
        PcwType::BulkCount.manifest_name(),
        PcwType::LargeRawcount.manifest_name(),
        1,
    );
    let problems = check(&retyped, &PerfCounter::ALL).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with(&format!("id {}:", rate.id())),
        "{problems:?}"
    );

    let renamed = text.replace("name=\"Host Resets\"", "name=\"Resets\"");
    assert!(check(&renamed, &PerfCounter::ALL).is_err());

    let reguid = text.replace(COUNTER_SET_GUID, "00000000-0000-0000-0000-000000000000");
    assert!(check(&reguid, &PerfCounter::ALL).is_err());
}

#[test]
fn malformed_xml_fails() {
    let text = manifest().replacen("</counterSet>", "", 1);
    let problems = check(&text, &PerfCounter::ALL).unwrap_err();
    assert!(problems[0].starts_with("not XML"), "{problems:?}");
}
