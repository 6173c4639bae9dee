//! Spec parsing on arbitrary text, in both spellings (`a@b` and `image/a/b`).
//!
//! Property: a chain that parses has a canonical text that parses back to an equal Spec,
//! whose own canonical text is the same (canonical is a fixed point); the `image/`
//! spelling of the canonical text (when no argument holds a `/`) parses to the same Spec;
//! and every error is EINVAL.
#![no_main]

use imgfs::spec::{Spec, Styles};
use libfuzzer_sys::fuzz_target;

fn check(text: &str, styles: &Styles) {
    let spec = match Spec::parse(text, styles) {
        Ok(spec) => spec,
        Err(e) => {
            assert_eq!(e.errno(), libc::EINVAL, "{text:?}: error {e:?} is not EINVAL");
            return;
        }
    };
    let canonical = spec.canonical();
    if canonical.is_empty() {
        // A chain of defaults only (`interlace,0`): the variant is a re-encode; an empty
        // name is not a spec a mount can be asked for, so there is nothing to round-trip.
        assert_eq!(spec, Spec::default(), "{text:?}: empty canonical of a non-default spec");
        return;
    }
    let again = Spec::parse(&canonical, styles).unwrap_or_else(|e| {
        panic!("{text:?} parsed as {spec:?}, but its canonical {canonical:?} fails: {e}")
    });
    assert_eq!(
        again, spec,
        "{text:?}: canonical {canonical:?} parses to a different spec"
    );
    assert_eq!(
        again.canonical(),
        canonical,
        "{text:?}: canonical text is not a fixed point"
    );
    // The other spelling of the same chain. An empty canonical (no-op spec) has no
    // `image/` form with a non-empty segment, and a `/` inside an argument would split it.
    if !canonical.is_empty() && !canonical.contains('/') {
        let slashed = format!("image/{}", canonical.replace('@', "/"));
        let other = Spec::parse(&slashed, styles).unwrap_or_else(|e| {
            panic!("{text:?}: canonical {canonical:?} as {slashed:?} fails: {e}")
        });
        assert_eq!(other, spec, "{text:?}: {slashed:?} parses to a different spec");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let styles = Styles::default();
    check(text, &styles);
    // The same text in the other spelling, so both splitters see every input.
    if let Some(rest) = text.strip_prefix("image/") {
        check(&rest.replace('/', "@"), &styles);
    } else {
        check(&format!("image/{}", text.replace('@', "/")), &styles);
    }
});
