//! The pipeline without a mount (no root needed): variants of a temporary source directory
//! converted by the library, answering what a mount of that directory would.

use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};

use imgfs::convert::Inputs;
use imgfs::pipeline::Settings;
use imgfs::source::{Caller, Found, Root};
use imgfs::spec::{Spec, Styles};

/// The one place the tests call the conversion library: the bytes a mount of `src_dir`
/// would answer for `name` (`SOURCE@CHAIN`), or its errno. The source is the name up to its
/// first `@` (longest-prefix resolution and real names winning are the mount's, tested
/// there). Watermark images are found inside `src_dir`, as in a mount of it.
pub fn convert_name(src_dir: &Path, styles: &Styles, name: &str) -> Result<Vec<u8>, i32> {
    let (source, chain) = name.split_once('@').expect("a variant name");
    let settings = Settings::default();
    let spec = Spec::parse(chain, styles).map_err(|e| e.errno())?;
    let root = Root::open(src_dir).unwrap();
    let found = Found::at(&src_dir.join(source)).map_err(|e| e.errno())?;
    let inputs = Inputs::find(&root, found, &spec, &Caller::root()).map_err(|e| e.errno())?;
    let (bytes, marks, _) = inputs
        .read(Path::new(source), &settings.limits)
        .map_err(|e| e.errno())?;
    imgfs::pipeline::convert(&bytes, &marks, &spec, &settings)
        .map(|output| output.bytes)
        .map_err(|e| e.errno())
}

/// A temporary source directory, and files holding converted variants for the independent
/// decoders, which read paths.
pub struct Library {
    pub source: PathBuf,
    styles: Styles,
    outputs: PathBuf,
    written: Cell<usize>,
    _dir: tempfile::TempDir,
}

impl Library {
    /// `fill` writes the source directory.
    pub fn new(styles: Styles, fill: impl FnOnce(&Path)) -> Library {
        let dir = tempfile::tempdir().unwrap();
        let (source, outputs) = (dir.path().join("src"), dir.path().join("out"));
        fs::create_dir(&source).unwrap();
        fs::create_dir(&outputs).unwrap();
        fill(&source);
        Library {
            source,
            styles,
            outputs,
            written: Cell::new(0),
            _dir: dir,
        }
    }

    pub fn new_with_files(fill: impl FnOnce(&Path)) -> Library {
        Library::new(Styles::default(), fill)
    }

    pub fn convert(&self, name: &str) -> Result<Vec<u8>, i32> {
        convert_name(&self.source, &self.styles, name)
    }

    /// A file holding what `name` reads as on a mount: the source itself, or its variant.
    pub fn path(&self, name: &str) -> PathBuf {
        if !name.contains('@') {
            return self.source.join(name);
        }
        let bytes = self
            .convert(name)
            .unwrap_or_else(|errno| panic!("{name}: errno {errno}"));
        self.write(&bytes)
    }

    /// Numbered files: a variant's name can be longer than a file name may be.
    pub fn write(&self, bytes: &[u8]) -> PathBuf {
        let path = self.outputs.join(self.written.get().to_string());
        self.written.set(self.written.get() + 1);
        fs::write(&path, bytes).unwrap();
        path
    }
}
