//! Hostile archives, written header byte by header byte so that names the
//! tar crate would refuse to write ('..', absolute paths) really reach the
//! reader, plus round trips through [`Packer`].

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use tar::{EntryType, Header};

use super::*;

// ---- helpers -------------------------------------------------------------

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("nimbus-archive-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One entry with its raw name and link name copied into the header as is.
fn raw(name: &[u8], entry_type: EntryType, mode: u32, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut header = Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(data.len() as u64);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    raw(name.as_bytes(), EntryType::Regular, 0o644, b"", data)
}

fn file_with_mode(name: &str, mode: u32) -> Vec<u8> {
    raw(name.as_bytes(), EntryType::Regular, mode, b"", b"data")
}

fn dir(name: &str) -> Vec<u8> {
    raw(name.as_bytes(), EntryType::Directory, 0o755, b"", b"")
}

fn symlink(name: &str, target: &str) -> Vec<u8> {
    raw(name.as_bytes(), EntryType::Symlink, 0o777, target.as_bytes(), b"")
}

fn hard_link(name: &str, target: &str) -> Vec<u8> {
    raw(name.as_bytes(), EntryType::Link, 0o644, target.as_bytes(), b"")
}

/// A GNU long-name record giving `entry` the name `name`.
fn gnu_long_name(name: &str, entry: Vec<u8>) -> Vec<u8> {
    let mut out = raw(b"././@LongLink", EntryType::GNULongName, 0o644, b"", &[name.as_bytes(), b"\0"].concat());
    out.extend(entry);
    out
}

/// A GNU long-link record giving `entry` the link target `target`.
fn gnu_long_link(target: &str, entry: Vec<u8>) -> Vec<u8> {
    let mut out = raw(b"././@LongLink", EntryType::GNULongLink, 0o644, b"", &[target.as_bytes(), b"\0"].concat());
    out.extend(entry);
    out
}

/// A pax extended header giving `entry` the path `path`.
fn pax_path(path: &str, entry: Vec<u8>) -> Vec<u8> {
    let body = format!(" path={path}\n");
    let mut len = body.len() + 1;
    while body.len() + len.to_string().len() != len {
        len = body.len() + len.to_string().len();
    }
    let mut out = raw(b"PaxHeaders/x", EntryType::XHeader, 0o644, b"", format!("{len}{body}").as_bytes());
    out.extend(entry);
    out
}

/// A GNU sparse entry declaring `real_size` bytes backed by 512 stored ones.
fn gnu_sparse(name: &str, real_size: u64) -> Vec<u8> {
    fn octal(field: &mut [u8; 12], value: u64) {
        field.copy_from_slice(format!("{value:011o}\0").as_bytes());
    }
    let mut header = Header::new_gnu();
    header.set_path(name).unwrap();
    header.set_entry_type(EntryType::GNUSparse);
    header.set_mode(0o644);
    header.set_size(512);
    let gnu = header.as_gnu_mut().unwrap();
    gnu.set_real_size(real_size);
    octal(&mut gnu.sparse[0].offset, real_size - 512);
    octal(&mut gnu.sparse[0].numbytes, 512);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(&[b'x'; 512]);
    out
}

fn archive(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = entries.concat();
    out.extend_from_slice(&[0; 1024]);
    out
}

/// `check`, `extract` and `read_file` must all refuse `archive` with the same
/// error, and `extract` must leave nothing behind.
fn refuse(archive: &[u8]) -> ArchiveError {
    refuse_with(archive, &Limits::default())
}

fn refuse_with(archive: &[u8], limits: &Limits) -> ArchiveError {
    let from_check = check(archive, limits).unwrap_err();
    let from_read = read_file(archive, Path::new("nimbus.toml"), limits).unwrap_err();
    let tmp = TempDir::new();
    let dest = tmp.path().join("dest");
    let from_extract = extract(archive, Path::new(""), &dest, limits).unwrap_err();
    assert!(!dest.exists(), "a failed extraction left {} behind", dest.display());
    assert_eq!(from_check.to_string(), from_extract.to_string());
    assert_eq!(from_check.to_string(), from_read.to_string());
    from_check
}

/// Like `assert!(matches!(..))`, but shows the value that did not match.
macro_rules! assert_matches {
    ($value:expr, $pattern:pat $(if $guard:expr)?) => {{
        let value = &$value;
        assert!(matches!(value, $pattern $(if $guard)?), "unexpected: {value:?} ({value})");
    }};
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

// ---- round trips ---------------------------------------------------------

#[test]
fn packed_directory_extracts_to_the_same_tree() {
    let src = TempDir::new();
    let s = src.path();
    let long_name = format!("lib/{}.txt", "n".repeat(120));
    fs::create_dir_all(s.join("bin")).unwrap();
    fs::create_dir_all(s.join("lib/deep")).unwrap();
    fs::create_dir_all(s.join("empty")).unwrap();
    fs::create_dir_all(s.join(".git")).unwrap();
    fs::write(s.join(".git/config"), b"[core]").unwrap();
    fs::write(s.join("nimbus.toml"), b"name = \"f\"\n").unwrap();
    fs::write(s.join("bin/run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(s.join("bin/run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(s.join("lib/deep/data.txt"), b"data").unwrap();
    fs::set_permissions(s.join("lib/deep/data.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(s.join(&long_name), b"long").unwrap();
    std::os::unix::fs::symlink("deep/data.txt", s.join("lib/current")).unwrap();
    std::os::unix::fs::symlink("../lib", s.join("bin/lib")).unwrap();

    let mut packer = Packer::new();
    packer.add_dir(s, "").unwrap();
    let bytes = packer.finish().unwrap();

    let out = TempDir::new();
    let dest = out.path().join("fn/code");
    let summary = extract(&bytes, Path::new("."), &dest, &Limits::default()).unwrap();
    assert_eq!(summary, Summary { files: 4, bytes: 11 + 18 + 4 + 4 });
    assert_eq!(check(&bytes, &Limits::default()).unwrap(), summary);

    assert_eq!(fs::read(dest.join("nimbus.toml")).unwrap(), b"name = \"f\"\n");
    assert_eq!(fs::read(dest.join("bin/run.sh")).unwrap(), b"#!/bin/sh\necho hi\n");
    assert_eq!(fs::read(dest.join(&long_name)).unwrap(), b"long");
    assert_eq!(mode_of(&dest.join("bin/run.sh")), 0o755);
    assert_eq!(mode_of(&dest.join("lib/deep/data.txt")), 0o644);
    assert_eq!(mode_of(&dest.join("nimbus.toml")), 0o644);
    assert_eq!(mode_of(&dest.join("lib/deep")), 0o755);
    assert!(dest.join("empty").is_dir());
    assert!(!dest.join(".git").exists());
    assert_eq!(fs::read_link(dest.join("lib/current")).unwrap(), Path::new("deep/data.txt"));
    assert_eq!(fs::read_link(dest.join("bin/lib")).unwrap(), Path::new("../lib"));
    assert_eq!(fs::read(dest.join("bin/lib/current")).unwrap(), b"data");
}

#[test]
fn packing_is_sorted_and_deterministic() {
    let src = TempDir::new();
    fs::create_dir_all(src.path().join("b")).unwrap();
    for name in ["z.txt", "a.txt", "b/c.txt"] {
        fs::write(src.path().join(name), name).unwrap();
    }
    let pack = || {
        let mut packer = Packer::new();
        packer.add_bytes("nimbus.toml", b"name = \"f\"\n", 0o600).unwrap();
        packer.add_dir(src.path(), "code").unwrap();
        packer.finish().unwrap()
    };
    let bytes = pack();
    assert_eq!(bytes, pack());
    let mut tar = tar::Archive::new(bytes.as_slice());
    let names: Vec<String> = tar.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    assert_eq!(names, ["nimbus.toml", "code/a.txt", "code/b", "code/b/c.txt", "code/z.txt"]);
}

#[test]
fn packer_normalises_modes() {
    let mut packer = Packer::new();
    packer.add_bytes("setuid-tool", b"x", 0o4750).unwrap();
    packer.add_bytes("private", b"x", 0o600).unwrap();
    packer.add_bytes("shared", b"x", 0o666).unwrap();
    let bytes = packer.finish().unwrap();
    let mut tar = tar::Archive::new(bytes.as_slice());
    let modes: Vec<u32> = tar.entries().unwrap().map(|e| e.unwrap().header().mode().unwrap()).collect();
    assert_eq!(modes, [0o755, 0o644, 0o644]);
}

#[test]
fn packer_refuses_paths_that_leave_the_archive() {
    assert!(Packer::new().add_bytes("../evil", b"x", 0o644).is_err());
    assert!(Packer::new().add_bytes("/etc/passwd", b"x", 0o644).is_err());
}

#[test]
fn subdir_extraction_puts_only_that_part_at_the_destination_root() {
    let src = TempDir::new();
    fs::create_dir_all(src.path().join("lib")).unwrap();
    fs::write(src.path().join("main.py"), b"print('hi')").unwrap();
    fs::write(src.path().join("lib/util.py"), b"X = 1").unwrap();
    let mut packer = Packer::new();
    packer.add_bytes("nimbus.toml", b"name = \"f\"\n", 0o644).unwrap();
    packer.add_dir(src.path(), "code").unwrap();
    packer.add_bytes("other/readme", b"not extracted", 0o644).unwrap();
    packer.add_bytes("codex/readme", b"not extracted either", 0o644).unwrap();
    let bytes = packer.finish().unwrap();

    let out = TempDir::new();
    let dest = out.path().join("code");
    let summary = extract(&bytes, Path::new("./code/"), &dest, &Limits::default()).unwrap();
    assert_eq!(summary, Summary { files: 2, bytes: 11 + 5 });
    let mut names: Vec<String> =
        fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["lib", "main.py"]);
    assert_eq!(fs::read(dest.join("lib/util.py")).unwrap(), b"X = 1");
}

#[test]
fn a_subdir_that_is_not_in_the_archive_is_an_error() {
    let bytes = archive(&[file("nimbus.toml", b"x"), file("code/main.py", b"x")]);
    let out = TempDir::new();
    let dest = out.path().join("dest");
    assert_matches!(
        extract(&bytes, Path::new("src"), &dest, &Limits::default()).unwrap_err(),
        ArchiveError::SubdirMissing { .. }
    );
    assert!(!dest.exists());
    assert_matches!(
        extract(&bytes, Path::new("../code"), &dest, &Limits::default()).unwrap_err(),
        ArchiveError::UnsafePath { reason: "contains a '..' component", .. }
    );
    assert!(!dest.exists());
}

#[test]
fn a_subdir_that_is_a_file_is_an_error() {
    let bytes = archive(&[file("nimbus.toml", b"x"), file("code", b"x")]);
    let out = TempDir::new();
    let dest = out.path().join("dest");
    assert_matches!(
        extract(&bytes, Path::new("code"), &dest, &Limits::default()).unwrap_err(),
        ArchiveError::PathConflict { .. }
    );
    assert!(!dest.exists());
}

#[test]
fn a_failed_extraction_removes_the_destination() {
    let bytes = archive(&[
        file("nimbus.toml", b"x"),
        dir("code/"),
        file("code/a/b/c.txt", b"written first"),
        symlink("code/escape", "../../../etc"),
    ]);
    let out = TempDir::new();
    let dest = out.path().join("dest");
    assert_matches!(
        extract(&bytes, Path::new(""), &dest, &Limits::default()).unwrap_err(),
        ArchiveError::UnsafeSymlink { .. }
    );
    assert!(!dest.exists());
    assert!(out.path().exists());
}

#[test]
fn an_existing_destination_is_refused_and_left_alone() {
    let bytes = archive(&[file("nimbus.toml", b"x")]);
    let out = TempDir::new();
    fs::write(out.path().join("keep"), b"mine").unwrap();
    assert_matches!(
        extract(&bytes, Path::new(""), out.path(), &Limits::default()).unwrap_err(),
        ArchiveError::DestinationExists { .. }
    );
    assert_eq!(fs::read(out.path().join("keep")).unwrap(), b"mine");
}

// ---- paths ---------------------------------------------------------------

#[test]
fn absolute_paths_are_refused() {
    for entry in [file("/etc/passwd", b"root::0:0::/:/bin/sh"), gnu_long_name("/tmp/evil", file("placeholder", b"x"))] {
        assert_matches!(
            refuse(&archive(&[file("nimbus.toml", b"x"), entry])),
            ArchiveError::UnsafePath { reason: "is absolute", path } if path.starts_with('/')
        );
    }
}

#[test]
fn dot_dot_components_are_refused() {
    for entry in [
        file("../evil", b"x"),
        file("a/../../evil", b"x"),
        dir("code/.."),
        gnu_long_name("x/../../evil", file("placeholder", b"x")),
        pax_path("../evil", file("placeholder", b"x")),
    ] {
        let err = refuse(&archive(&[file("nimbus.toml", b"x"), entry]));
        assert_matches!(err, ArchiveError::UnsafePath { reason: "contains a '..' component", path } if path.contains(".."));
    }
}

#[test]
fn empty_names_and_nul_bytes_are_refused() {
    assert_matches!(
        refuse(&archive(&[file("nimbus.toml", b"x"), file(".", b"x")])),
        ArchiveError::UnsafePath { reason: "is empty", .. }
    );
    assert_matches!(
        refuse(&archive(&[file("nimbus.toml", b"x"), gnu_long_name("a\0b", file("placeholder", b"x"))])),
        ArchiveError::UnsafePath { reason: "contains a NUL byte", .. }
    );
}

#[test]
fn the_root_directory_entry_is_accepted() {
    let bytes = archive(&[dir("./"), file("./nimbus.toml", b"x")]);
    assert_eq!(check(&bytes, &Limits::default()).unwrap(), Summary { files: 1, bytes: 1 });
}

#[test]
fn duplicate_entries_are_refused() {
    for second in [file("./nimbus.toml", b"y"), dir("nimbus.toml/"), symlink("nimbus.toml", "other")] {
        let err = refuse(&archive(&[file("nimbus.toml", b"x"), second]));
        assert_matches!(err, ArchiveError::Duplicate { path } if path.contains("nimbus.toml"));
    }
    assert_matches!(
        refuse(&archive(&[file("nimbus.toml", b"x"), dir("d/"), dir("./d")])),
        ArchiveError::Duplicate { .. }
    );
}

#[test]
fn a_path_cannot_be_both_a_file_and_a_directory() {
    assert_matches!(
        refuse(&archive(&[file("nimbus.toml", b"x"), file("a", b"x"), file("a/b", b"x")])),
        ArchiveError::PathConflict { .. }
    );
    assert_matches!(
        refuse(&archive(&[file("nimbus.toml", b"x"), file("a/b", b"x"), file("a", b"x")])),
        ArchiveError::PathConflict { .. }
    );
    // A directory entry after its contents is fine.
    let bytes = archive(&[file("nimbus.toml", b"x"), file("a/b", b"x"), dir("a/")]);
    assert_eq!(check(&bytes, &Limits::default()).unwrap().files, 2);
}

// ---- links ---------------------------------------------------------------

#[test]
fn absolute_symlinks_are_refused() {
    let err = refuse(&archive(&[file("nimbus.toml", b"x"), symlink("etc", "/etc")]));
    assert_matches!(err, ArchiveError::UnsafeSymlink { reason: "is absolute", .. });
}

#[test]
fn symlinks_leading_out_of_the_root_are_refused() {
    for entry in [
        symlink("up", ".."),
        symlink("a/b/link", "../../../etc"),
        gnu_long_link("../../../../../../etc/passwd", symlink("a/link", "placeholder")),
    ] {
        let err = refuse(&archive(&[file("nimbus.toml", b"x"), entry]));
        assert_matches!(
            err,
            ArchiveError::UnsafeSymlink { reason: "climbs above the extracted directory", target, .. }
                if target.starts_with("..")
        );
    }
    // Climbing out through another link: "x" is the root, so "x/.." is above it.
    let err = refuse(&archive(&[file("nimbus.toml", b"x"), symlink("x", "."), symlink("y", "x/..")]));
    assert_matches!(
        err,
        ArchiveError::UnsafeSymlink { reason: "has '..' after a directory name (write it without)", .. }
    );
}

#[test]
fn symlinks_inside_the_root_are_extracted() {
    let bytes = archive(&[
        file("nimbus.toml", b"x"),
        file("lib/data", b"data"),
        symlink("bin/data", "../lib/data"),
        symlink("here", "."),
        symlink("lib/also", "./data"),
    ]);
    let out = TempDir::new();
    let dest = out.path().join("dest");
    extract(&bytes, Path::new(""), &dest, &Limits::default()).unwrap();
    assert_eq!(fs::read(dest.join("bin/data")).unwrap(), b"data");
    assert_eq!(fs::read_link(dest.join("lib/also")).unwrap(), Path::new("data"));
    assert_eq!(fs::read_link(dest.join("here")).unwrap(), Path::new("."));
}

#[test]
fn symlinks_leading_out_of_the_extracted_subdir_are_refused() {
    let bytes = archive(&[file("nimbus.toml", b"x"), symlink("code/manifest", "../nimbus.toml")]);
    // Inside the archive, so fine for the whole of it...
    check(&bytes, &Limits::default()).unwrap();
    let out = TempDir::new();
    extract(&bytes, Path::new(""), &out.path().join("all"), &Limits::default()).unwrap();
    // ...but it leads out of code/, the directory extracted here.
    let dest = out.path().join("code");
    assert_matches!(
        extract(&bytes, Path::new("code"), &dest, &Limits::default()).unwrap_err(),
        ArchiveError::UnsafeSymlink { reason: "climbs above the extracted directory", .. }
    );
    assert!(!dest.exists());
}

#[test]
fn writing_through_a_symlink_is_refused() {
    let cases = [
        // The classic: a link to somewhere, then a file "inside" the link.
        vec![symlink("dir", "."), file("dir/evil", b"x")],
        vec![dir("real/"), symlink("a/link", "../real"), file("a/link/deeper/evil", b"x")],
        vec![file("f", b"x"), symlink("dir", "."), hard_link("dir/h", "f")],
        vec![symlink("dir", "."), dir("dir/sub/")],
    ];
    for entries in cases {
        let bytes = archive(&[vec![file("nimbus.toml", b"x")], entries].concat());
        assert_matches!(refuse(&bytes), ArchiveError::ThroughSymlink { .. });
    }
}

#[test]
fn hard_links_to_earlier_files_are_extracted() {
    let bytes = archive(&[
        file("nimbus.toml", b"x"),
        raw(b"bin/tool", EntryType::Regular, 0o755, b"", b"#!/bin/sh\n"),
        hard_link("sub/tool", "./bin/tool"),
        hard_link("manifest", "nimbus.toml"),
        hard_link("manifest-again", "manifest"),
    ]);
    let out = TempDir::new();
    let dest = out.path().join("dest");
    let summary = extract(&bytes, Path::new(""), &dest, &Limits::default()).unwrap();
    assert_eq!(summary, Summary { files: 5, bytes: 1 + 10 });
    assert_eq!(fs::read(dest.join("manifest-again")).unwrap(), b"x");
    assert_eq!(read_file(&bytes, Path::new("manifest-again"), &Limits::default()).unwrap().unwrap(), b"x");
    assert_eq!(fs::read(dest.join("sub/tool")).unwrap(), b"#!/bin/sh\n");
    assert_eq!(mode_of(&dest.join("sub/tool")), 0o755);
    assert_eq!(read_file(&bytes, Path::new("manifest"), &Limits::default()).unwrap().unwrap(), b"x");
}

#[test]
fn hard_links_to_anything_but_an_earlier_file_are_refused() {
    let cases = [
        (vec![hard_link("passwd", "/etc/passwd")], "is absolute"),
        (vec![hard_link("h", "../outside")], "contains a '..' component"),
        (vec![hard_link("h", "missing")], "is not a regular file stored earlier in the archive"),
        (vec![hard_link("h", "later"), file("later", b"x")], "is not a regular file stored earlier in the archive"),
        (vec![hard_link("h", "h")], "is not a regular file stored earlier in the archive"),
        (vec![dir("d/"), hard_link("h", "d")], "is not a regular file stored earlier in the archive"),
        (
            vec![file("f", b"x"), symlink("s", "f"), hard_link("h", "s")],
            "is not a regular file stored earlier in the archive",
        ),
        (vec![hard_link("h", "")], "is empty"),
    ];
    for (entries, expected) in cases {
        let bytes = archive(&[vec![file("nimbus.toml", b"x")], entries].concat());
        assert_matches!(refuse(&bytes), ArchiveError::UnsafeHardLink { reason, .. } if *reason == expected);
    }
}

#[test]
fn hard_links_out_of_the_extracted_subdir_are_refused() {
    let bytes = archive(&[file("nimbus.toml", b"x"), hard_link("code/manifest", "nimbus.toml")]);
    check(&bytes, &Limits::default()).unwrap();
    let out = TempDir::new();
    let dest = out.path().join("code");
    assert_matches!(
        extract(&bytes, Path::new("code"), &dest, &Limits::default()).unwrap_err(),
        ArchiveError::UnsafeHardLink { reason: "lies outside the extracted directory", .. }
    );
    assert!(!dest.exists());
}

// ---- entry types ---------------------------------------------------------

#[test]
fn devices_fifos_and_unknown_types_are_refused() {
    let cases = [
        (EntryType::Char, "a character device"),
        (EntryType::Block, "a block device"),
        (EntryType::Fifo, "a FIFO (named pipe)"),
        (EntryType::Continuous, "a contiguous file"),
        (EntryType::new(b'V'), "an entry of unknown type 'V'"),
    ];
    for (entry_type, expected) in cases {
        let bytes = archive(&[file("nimbus.toml", b"x"), raw(b"dev/thing", entry_type, 0o666, b"", b"")]);
        assert_matches!(refuse(&bytes), ArchiveError::UnsupportedType { kind, .. } if kind == expected);
    }
}

#[test]
fn gnu_sparse_entries_are_refused() {
    // 512 stored bytes declaring a 1 GiB file.
    let bytes = archive(&[file("nimbus.toml", b"x"), gnu_sparse("big.img", 1 << 30)]);
    let err = refuse(&bytes);
    assert_matches!(err, ArchiveError::UnsupportedType { kind, path } if kind == "a GNU sparse file" && path == "big.img");
}

#[test]
fn a_git_archive_global_header_is_ignored() {
    let global = raw(
        b"pax_global_header",
        EntryType::XGlobalHeader,
        0o666,
        b"",
        b"52 comment=0123456789abcdef0123456789abcdef01234567\n",
    );
    let bytes = archive(&[global, file("nimbus.toml", b"x")]);
    assert_eq!(read_file(&bytes, Path::new("nimbus.toml"), &Limits::default()).unwrap().unwrap(), b"x");
}

// ---- modes ---------------------------------------------------------------

#[test]
fn modes_become_0755_or_0644_with_no_special_bits() {
    let bytes = archive(&[
        file("nimbus.toml", b"x"),
        file_with_mode("setuid", 0o4755),
        file_with_mode("setgid-exec-by-group", 0o2710),
        file_with_mode("sticky-world-writable", 0o1666),
        file_with_mode("private", 0o600),
        raw(b"shared-dir/", EntryType::Directory, 0o3777, b"", b""),
    ]);
    let out = TempDir::new();
    let dest = out.path().join("dest");
    extract(&bytes, Path::new(""), &dest, &Limits::default()).unwrap();
    assert_eq!(mode_of(&dest), 0o755);
    assert_eq!(mode_of(&dest.join("setuid")), 0o755);
    assert_eq!(mode_of(&dest.join("setgid-exec-by-group")), 0o755);
    assert_eq!(mode_of(&dest.join("sticky-world-writable")), 0o644);
    assert_eq!(mode_of(&dest.join("private")), 0o644);
    assert_eq!(mode_of(&dest.join("shared-dir")), 0o755);
}

// ---- limits --------------------------------------------------------------

#[test]
fn too_many_entries_are_refused() {
    let limits = Limits { max_entries: 3, ..Limits::default() };
    let three = [file("nimbus.toml", b"x"), dir("d/"), file("d/a", b"x")];
    assert_eq!(check(&archive(&three), &limits).unwrap().files, 2);
    let four = archive(&[three.to_vec(), vec![file("d/b", b"x")]].concat());
    assert_matches!(refuse_with(&four, &limits), ArchiveError::TooManyEntries { path, max: 3 } if path == "d/b");
}

#[test]
fn a_huge_declared_size_is_refused_before_reading_data() {
    // The header claims 300 MiB; only one block of data follows.
    let mut header = Header::new_gnu();
    header.set_path("bomb").unwrap();
    header.set_size(300 * 1024 * 1024);
    header.set_mode(0o644);
    header.set_cksum();
    let bomb = [header.as_bytes().as_slice(), &[0; 512]].concat();
    let bytes = archive(&[file("nimbus.toml", b"x"), bomb]);
    assert_matches!(refuse(&bytes), ArchiveError::TooLarge { path, .. } if path == "bomb");
}

#[test]
fn sizes_add_up_against_the_limit() {
    let limits = Limits { max_unpacked_bytes: 1000, ..Limits::default() };
    let bytes = archive(&[file("nimbus.toml", &[b'a'; 600]), file("second", &[b'b'; 600])]);
    assert_matches!(
        refuse_with(&bytes, &limits),
        ArchiveError::TooLarge { path, max: 1000 } if path == "second"
    );
    let fits = archive(&[file("nimbus.toml", &[b'a'; 500]), file("second", &[b'b'; 500])]);
    assert_eq!(check(&fits, &limits).unwrap(), Summary { files: 2, bytes: 1000 });
}

// ---- malformed input -----------------------------------------------------

#[test]
fn input_that_is_not_a_tar_is_refused() {
    for junk in [b"definitely not a tar archive".to_vec(), vec![b'x'; 2048]] {
        let err = refuse(&junk);
        assert_matches!(err, ArchiveError::NotTar { .. });
        assert!(err.to_string().starts_with("the upload is not a valid tar archive (at its start): "), "{err}");
    }
}

#[test]
fn a_truncated_archive_is_refused() {
    let whole = archive(&[file("nimbus.toml", b"x"), file("code/big", &[b'z'; 4000])]);
    // Cut in the middle of code/big's data.
    let cut = &whole[..512 * 2 + 512 + 2048];
    assert_matches!(check(cut, &Limits::default()).unwrap_err(), ArchiveError::NotTar { .. });
    assert_matches!(
        read_file(cut, Path::new("nimbus.toml"), &Limits::default()).unwrap_err(),
        ArchiveError::NotTar { .. }
    );
    let out = TempDir::new();
    let dest = out.path().join("dest");
    assert_eq!(
        extract(cut, Path::new("code"), &dest, &Limits::default()).unwrap_err().to_string(),
        "the upload is not a valid tar archive (in entry \"code/big\"): its data stops after 2048 of 4000 bytes; \
         create it with `nimbus deploy` or `tar -cf`"
    );
    assert!(!dest.exists());
}

#[test]
fn an_empty_archive_is_refused_with_a_hint() {
    for empty in [Vec::new(), archive(&[])] {
        let err = refuse(&empty);
        assert_matches!(err, ArchiveError::Empty);
        assert!(err.to_string().contains("nimbus.toml"), "{err}");
    }
}

// ---- read_file and check ------------------------------------------------

#[test]
fn read_file_normalises_the_path_and_returns_none_when_absent() {
    let bytes = archive(&[file("./nimbus.toml", b"name"), dir("code/"), symlink("link", "nimbus.toml")]);
    let limits = Limits::default();
    assert_eq!(read_file(&bytes, Path::new("nimbus.toml"), &limits).unwrap().unwrap(), b"name");
    assert_eq!(read_file(&bytes, Path::new("./nimbus.toml"), &limits).unwrap().unwrap(), b"name");
    assert_eq!(read_file(&bytes, Path::new("missing"), &limits).unwrap(), None);
    assert_matches!(
        read_file(&bytes, Path::new("../nimbus.toml"), &limits).unwrap_err(),
        ArchiveError::UnsafePath { .. }
    );
    assert_matches!(
        read_file(&bytes, Path::new("code"), &limits).unwrap_err(),
        ArchiveError::NotRegularFile { kind: "a directory", .. }
    );
    assert_matches!(
        read_file(&bytes, Path::new("link"), &limits).unwrap_err(),
        ArchiveError::NotRegularFile { kind: "a symlink", .. }
    );
}

#[test]
fn check_counts_files_and_bytes_without_writing() {
    let bytes = archive(&[
        file("nimbus.toml", b"12345"),
        dir("code/"),
        file("code/a", b"123"),
        symlink("code/b", "a"),
        hard_link("code/c", "code/a"),
    ]);
    assert_eq!(check(&bytes, &Limits::default()).unwrap(), Summary { files: 3, bytes: 8 });
}

#[test]
fn error_messages_name_the_entry_and_the_fix() {
    let cases = [
        (
            archive(&[file("nimbus.toml", b"x"), file("../evil", b"x")]),
            "archive entry \"../evil\" has an unsafe path: it contains a '..' component; \
             store every file under a relative path inside the upload",
        ),
        (
            archive(&[file("nimbus.toml", b"x"), symlink("etc", "/etc")]),
            "archive entry \"etc\" is a symlink to \"/etc\", which is absolute; only relative links that stay inside \
             the extracted directory are allowed: make the link relative or replace it with a copy of the file",
        ),
        (
            archive(&[file("nimbus.toml", b"x"), symlink("dir", "."), file("dir/evil", b"x")]),
            "archive entry \"dir/evil\" lies under \"dir\", which is a symlink; files are never written through \
             links, so store \"dir\" as a real directory",
        ),
        (
            archive(&[file("nimbus.toml", b"x"), raw(b"pipe", EntryType::Fifo, 0o644, b"", b"")]),
            "archive entry \"pipe\" is a FIFO (named pipe), which cannot be deployed; upload only regular files, \
             directories and links",
        ),
        (
            archive(&[file("nimbus.toml", b"x"), file("nimbus.toml", b"y")]),
            "archive entry \"nimbus.toml\" appears more than once; each path may be stored only once: \
             re-create the archive",
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(check(&bytes, &Limits::default()).unwrap_err().to_string(), expected);
    }
}
