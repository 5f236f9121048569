//! Is VMware's own balloon driver, `vmmemctl.sys`, loaded? Two balloon drivers would
//! fight over the one host session (each START resets the other's), so the driver refuses
//! to start next to it, and stands down if it loads later.
//!
//! At start the glue lists loaded kernel modules with `AuxKlibQueryModuleInformation` (the
//! documented wrapper over `SystemModuleInformation`), which fills an array of
//! `AUX_MODULE_EXTENDED_INFO` records ([`lists_vmmemctl`]); from then on its load-image
//! notify routine sees every image that loads ([`is_vmmemctl_image`]). The matching is
//! here, portable and tested on Linux. A loaded *image* is what matters: an installed but
//! disabled `vmmemctl` service must not block vmballoon, so the registry is not consulted.

/// `AUX_KLIB_MODULE_PATH_LEN`: bytes of `FullPathName`.
pub const PATH_LEN: usize = 256;

/// `sizeof(AUX_MODULE_EXTENDED_INFO)` on x64: `ImageBase` (8) + `ImageSize` (4) +
/// `FileNameOffset` (2) + `FullPathName[256]`, padded to the pointer alignment.
pub const RECORD_SIZE: usize = 0x110;

/// Offset of `FileNameOffset` (USHORT).
const FILE_NAME_OFFSET_AT: usize = 0x0C;
/// Offset of `FullPathName` (UCHAR[256]).
const FULL_PATH_AT: usize = 0x0E;

/// VMware's balloon driver image.
pub const VMMEMCTL: &[u8] = b"vmmemctl.sys";

/// The file name of one record: `FullPathName` from `FileNameOffset` up to the NUL.
#[must_use]
pub fn file_name(record: &[u8]) -> Option<&[u8]> {
    let offset = record.get(FILE_NAME_OFFSET_AT..FULL_PATH_AT)?;
    let offset = usize::from(u16::from_le_bytes(offset.try_into().ok()?));
    let path = record.get(FULL_PATH_AT..FULL_PATH_AT.checked_add(PATH_LEN)?)?;
    let name = path.get(offset..)?;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    name.get(..end)
}

/// Whether a buffer of `AUX_MODULE_EXTENDED_INFO` records names `vmmemctl.sys`
/// (case-insensitively: the loader does not normalise case).
#[must_use]
pub fn lists_vmmemctl(records: &[u8]) -> bool {
    records
        .chunks_exact(RECORD_SIZE)
        .filter_map(file_name)
        .any(|n| n.eq_ignore_ascii_case(VMMEMCTL))
}

/// Whether a load-image notification is VMware's balloon driver: a kernel image (the
/// notify routine's `ProcessId` is zero for a driver) whose full image name
/// (`FullImageName`, UTF-16, possibly absent) ends in a component equal to `vmmemctl.sys`,
/// case-insensitively. Only the final component counts: `\SystemRoot\...\vmmemctl.sys`
/// and `\??\C:\...\VMMEMCTL.SYS` match, `vmmemctl.sys.bak` and `xvmmemctl.sys` do not.
#[must_use]
pub fn is_vmmemctl_image(full_image_name: Option<&[u16]>, kernel_image: bool) -> bool {
    let Some(name) = full_image_name.filter(|_| kernel_image) else {
        return false;
    };
    let last = name
        .rsplit(|&u| u == u16::from(b'\\') || u == u16::from(b'/'))
        .next()
        .unwrap_or(name);
    last.len() == VMMEMCTL.len()
        && last
            .iter()
            .zip(VMMEMCTL)
            .all(|(&u, &b)| u8::try_from(u).is_ok_and(|c| c.eq_ignore_ascii_case(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str) -> Vec<u8> {
        let mut r = vec![0u8; RECORD_SIZE];
        r[0..8].copy_from_slice(&0xFFFF_F800_0000_0000u64.to_le_bytes());
        r[8..12].copy_from_slice(&0x1000u32.to_le_bytes());
        let name_at = path.rfind('\\').map_or(0, |i| i + 1) as u16;
        r[0x0C..0x0E].copy_from_slice(&name_at.to_le_bytes());
        r[0x0E..0x0E + path.len()].copy_from_slice(path.as_bytes());
        r
    }

    #[test]
    fn record_layout_is_x64_aux_module_extended_info() {
        // 8 + 4 + 2 + 256 = 270, rounded up to the 8-byte alignment of ImageBase.
        assert_eq!(RECORD_SIZE, (8 + 4 + 2 + PATH_LEN).next_multiple_of(8));
        assert_eq!(
            file_name(&record(r"\SystemRoot\System32\drivers\vmmemctl.sys")),
            Some(&b"vmmemctl.sys"[..])
        );
        assert_eq!(
            file_name(&record("ntoskrnl.exe")),
            Some(&b"ntoskrnl.exe"[..])
        );
    }

    #[test]
    fn finds_vmmemctl_in_any_case_among_other_modules() {
        let mut buf = record(r"\SystemRoot\system32\ntoskrnl.exe");
        buf.extend(record(r"\SystemRoot\System32\drivers\VMMEMCTL.SYS"));
        buf.extend(record(r"\SystemRoot\System32\drivers\vmballoon.sys"));
        assert!(lists_vmmemctl(&buf));
        let mut other = record(r"\SystemRoot\system32\ntoskrnl.exe");
        other.extend(record(r"\SystemRoot\System32\drivers\vmmemctl.sys.bak"));
        other.extend(record(r"\SystemRoot\System32\drivers\xvmmemctl.sys"));
        assert!(!lists_vmmemctl(&other));
    }

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    #[test]
    fn a_loading_kernel_image_is_matched_on_its_last_component() {
        for path in [
            r"\SystemRoot\System32\drivers\vmmemctl.sys",
            r"\??\C:\Program Files\VMware\VMware Tools\Drivers\memctl\VMMemCtl.SYS",
            r"\Device\HarddiskVolume3\Windows\System32\DriverStore\FileRepository\x\vmmemctl.sys",
            "vmmemctl.sys",
            "C:/drivers/vmmemctl.sys",
        ] {
            assert!(is_vmmemctl_image(Some(&wide(path)), true), "{path}");
        }
        for path in [
            r"\SystemRoot\System32\drivers\vmmemctl.sys.bak",
            r"\SystemRoot\System32\drivers\xvmmemctl.sys",
            r"\SystemRoot\System32\drivers\vmmemctl.sy",
            r"\SystemRoot\System32\vmmemctl.sys\other.sys",
            r"\SystemRoot\System32\drivers\vmballoon.sys",
            r"\SystemRoot\System32\drivers\",
            "",
        ] {
            assert!(!is_vmmemctl_image(Some(&wide(path)), true), "{path}");
        }
        // Non-ASCII look-alikes (fullwidth letters, a Kelvin sign for k) never match.
        assert!(!is_vmmemctl_image(Some(&wide("ｖmmemctl.sys")), true));
        assert!(!is_vmmemctl_image(Some(&wide("vmmemctl.sy\u{212A}")), true));
    }

    #[test]
    fn user_images_and_unnamed_images_never_match() {
        let name = wide(r"\SystemRoot\System32\drivers\vmmemctl.sys");
        assert!(!is_vmmemctl_image(Some(&name), false));
        assert!(!is_vmmemctl_image(None, true));
        assert!(!is_vmmemctl_image(None, false));
    }

    #[test]
    fn malformed_records_never_match() {
        let mut r = record(r"\drivers\vmmemctl.sys");
        r[0x0C..0x0E].copy_from_slice(&300u16.to_le_bytes());
        assert_eq!(file_name(&r), None);
        assert!(!lists_vmmemctl(&r));
        // A trailing partial record is ignored.
        assert!(!lists_vmmemctl(
            &record(r"\drivers\vmmemctl.sys")[..RECORD_SIZE - 1]
        ));
    }
}
