//! Running as a mount helper: `mount -t fuse.imgfs SRC MNT -o OPTS` and fstab lines reach
//! imgfs through mount.fuse3 as `imgfs SRC MNT -o OPTS`. This module turns that calling
//! form into `imgfs mount --daemon SRC MNT ...`, each `-o name=value` into the long option
//! `--name value` of `imgfs mount` (and a bare `name` into the flag `--name`), derived from
//! the clap definition so that every option has both spellings; the other names stay
//! `-o` options for FUSE and the kernel.

use std::ffi::OsString;

use crate::cli::command;

/// Options mount(8) and mount.fuse3 add on their own: `rw` unless `ro` is given (imgfs is
/// always read-only), `dev` and `suid` unless `nodev`/`nosuid` are (never honoured).
const ADDED_BY_MOUNT: [&str; 3] = ["rw", "dev", "suid"];

/// The command line `imgfs` runs: `args` as given, or, for the mount helper's calling form
/// (`imgfs SRC MNT [-o OPTS]...`, the first argument neither an option nor a subcommand),
/// the `imgfs mount --daemon` line that means the same.
pub fn command_line(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some(first) = args.get(1).and_then(|a| a.to_str()) else {
        return Ok(args);
    };
    let subcommands = command();
    let is_subcommand = first == "help" || subcommands.find_subcommand(first).is_some();
    if first == "mount" {
        // `imgfs mount ... -o cache_size=1GiB` means the same as under mount(8).
        return translate_all(args[..2].to_vec(), &args[2..], false);
    }
    if args.len() < 3 || first.starts_with('-') || is_subcommand {
        return Ok(args);
    }
    let mut line: Vec<OsString> = vec![args[0].clone(), "mount".into(), "--daemon".into()];
    line.extend_from_slice(&args[1..3]);
    translate_all(line, &args[3..], true)
}

/// `line` followed by `args` with each `-o OPTS` translated; mount.fuse3 passes nothing but
/// `-o` there, and `imgfs mount` options pass through as they are. `from_mount`: drop
/// the options mount(8) adds by itself ([`ADDED_BY_MOUNT`]).
fn translate_all(
    mut line: Vec<OsString>,
    args: &[OsString],
    from_mount: bool,
) -> Result<Vec<OsString>, String> {
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let text = arg
            .to_str()
            .ok_or_else(|| format!("{}: not UTF-8", arg.to_string_lossy()))?;
        let options = match text.strip_prefix("-o") {
            Some("") => rest
                .next()
                .and_then(|a| a.to_str())
                .ok_or("-o needs a value")?,
            Some(joined) => joined,
            None => {
                line.push(arg.clone());
                continue;
            }
        };
        line.extend(translate(options, from_mount)?);
    }
    Ok(line)
}

/// `-o` options as `imgfs mount` arguments: `cache_size=256MiB` → `--cache-size 256MiB`,
/// `no_passthrough` → `--no-passthrough`; names that are not options of `imgfs mount`
/// (allow_other, noexec, ...) are kept as one `-o` list for FUSE and the kernel.
pub fn translate(options: &str, from_mount: bool) -> Result<Vec<OsString>, String> {
    let mut cmd = command();
    cmd.build();
    let mount = cmd.find_subcommand("mount").expect("the mount subcommand");
    let (mut args, mut fuse): (Vec<OsString>, Vec<&str>) = (Vec::new(), Vec::new());
    for option in options.split(',').filter(|o| !o.is_empty()) {
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (option, None),
        };
        let long = name.replace('_', "-");
        let arg = mount.get_arguments().chain(cmd.get_arguments()).find(|a| {
            a.get_long() == Some(long.as_str()) && !matches!(long.as_str(), "help" | "version")
        });
        let Some(arg) = arg else {
            if !(from_mount && ADDED_BY_MOUNT.contains(&option)) {
                fuse.push(option);
            }
            continue;
        };
        args.push(format!("--{long}").into());
        match (arg.get_action().takes_values(), value) {
            (true, Some(value)) => args.push(value.into()),
            (true, None) => return Err(format!("-o {name} needs a value: {name}=VALUE")),
            (false, None) => {}
            (false, Some(_)) => return Err(format!("-o {name} takes no value")),
        }
    }
    if !fuse.is_empty() {
        args.push("-o".into());
        args.push(fuse.join(",").into());
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    fn line(args: &[&str]) -> Vec<String> {
        strings(command_line(args.iter().map(OsString::from).collect()).unwrap())
    }

    #[test]
    fn options_with_values_flags_and_fuse_options() {
        let args = translate(
            "allow_other,cache_size=256MiB,jobs=2,no_passthrough,noexec",
            true,
        )
        .unwrap();
        assert_eq!(
            strings(args),
            [
                "--cache-size",
                "256MiB",
                "--jobs",
                "2",
                "--no-passthrough",
                "-o",
                "allow_other,noexec"
            ]
        );
    }

    #[test]
    fn target_quality_translates() {
        let args = translate("target_quality=80", true).unwrap();
        assert_eq!(strings(args), ["--target-quality", "80"]);
    }

    #[test]
    fn shared_and_global_options_translate_too() {
        let args = translate("max_source_side=8000,strip_metadata,heic_preset=fast,verbose,styles_file=/etc/imgfs/styles", true).unwrap();
        assert_eq!(
            strings(args),
            [
                "--max-source-side",
                "8000",
                "--strip-metadata",
                "--heic-preset",
                "fast",
                "--verbose",
                "--styles-file",
                "/etc/imgfs/styles"
            ]
        );
    }

    #[test]
    fn metadata_options_translate() {
        let args = translate("keep_metadata,metadata=strip", true).unwrap();
        assert_eq!(strings(args), ["--keep-metadata", "--metadata", "strip"]);
    }

    /// Options added since the helper form: what nginx origins and boot mounts need.
    #[test]
    fn errors_and_disk_cache_options_translate() {
        let args = translate("errors=web,disk_cache=/var/cache/img,no_disk_cache", true);
        assert_eq!(
            strings(args.unwrap()),
            [
                "--errors",
                "web",
                "--disk-cache",
                "/var/cache/img",
                "--no-disk-cache"
            ]
        );
    }

    #[test]
    fn options_added_by_mount_are_dropped() {
        assert_eq!(
            strings(translate("rw,dev,suid", true).unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(
            strings(translate("ro,nodev", true).unwrap()),
            ["-o", "ro,nodev"]
        );
        // Given to `imgfs mount` by hand, rw is the user's and refused at mount.
        assert_eq!(strings(translate("rw", false).unwrap()), ["-o", "rw"]);
    }

    #[test]
    fn missing_or_unexpected_values_are_errors() {
        assert!(translate("cache_size", true)
            .unwrap_err()
            .contains("cache_size=VALUE"));
        assert!(translate("no_passthrough=1", true)
            .unwrap_err()
            .contains("no value"));
    }

    #[test]
    fn the_helper_form_becomes_a_detached_mount() {
        assert_eq!(
            line(&[
                "imgfs",
                "/srv/photos",
                "/mnt/img",
                "-o",
                "rw,allow_other,jobs=2,dev,suid"
            ]),
            [
                "imgfs",
                "mount",
                "--daemon",
                "/srv/photos",
                "/mnt/img",
                "--jobs",
                "2",
                "-o",
                "allow_other"
            ]
        );
        assert_eq!(
            line(&["imgfs", "src", "mnt", "-ocache_size=1GiB"]),
            [
                "imgfs",
                "mount",
                "--daemon",
                "src",
                "mnt",
                "--cache-size",
                "1GiB"
            ]
        );
        // Every translated line parses as `imgfs mount`.
        let parsed = <crate::cli::Cli as clap::Parser>::try_parse_from(line(&[
            "imgfs",
            "s",
            "m",
            "-o",
            "allow_other,cache_size=256MiB,jobs=2,fuse_threads=8",
        ]));
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn imgfs_mount_takes_the_same_o_options() {
        assert_eq!(
            line(&[
                "imgfs",
                "mount",
                "s",
                "m",
                "-o",
                "cache_size=1GiB,allow_other",
                "-v"
            ]),
            [
                "imgfs",
                "mount",
                "s",
                "m",
                "--cache-size",
                "1GiB",
                "-o",
                "allow_other",
                "-v"
            ]
        );
    }

    #[test]
    fn subcommands_and_options_are_left_alone() {
        for args in [
            &[
                "imgfs",
                "mount",
                "s",
                "m",
                "--jobs",
                "2",
                "-o",
                "allow_other",
            ][..],
            &["imgfs", "convert", "a.jpg", "format,png", "-o", "b.png"],
            &["imgfs", "--help"],
            &["imgfs", "help", "mount"],
            &["imgfs", "-v", "mount", "s", "m"],
        ] {
            assert_eq!(line(args), args.to_vec());
        }
    }
}
