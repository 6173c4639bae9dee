//! How much memory a conversion will hold, and a gate that admits conversions while their
//! estimates fit a budget, so a mount's memory stays bounded whatever the mix of requests.
//!
//! The estimate is made from the header before any pixel exists; each codec states what it
//! holds (`codec::decode_cost`, `codec::encode_cost`), as upper bounds of what
//! `scripts/bench.sh` measures (README, "Cache and concurrency").

use std::sync::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::limits::{Limits, MAX_EXIF_BYTES, MAX_ICC_BYTES};
use crate::spec::{Format, Op, Spec, Watermark, WatermarkContent};

use super::codec::{Cost, Header};
use super::resize;
use super::watermark::{self, LayerPlan};

const MIB: u64 = 1 << 20;
/// Per conversion besides pixels: codec contexts, tables, thread stacks.
const FIXED: u64 = 4 * MIB;

/// Peak bytes `info` holds: the source, and its EXIF parsed (about 100 bytes per 12-byte
/// field, so 9 times [`MAX_EXIF_BYTES`] at most).
pub fn estimate_info(source_len: usize) -> u64 {
    source_len as u64 + FIXED + 9 * MAX_EXIF_BYTES as u64
}

/// Peak bytes a conversion holds: the source bytes and every image mark's file bytes (all
/// read before the conversion starts and held to its end), the metadata carried
/// ([`metadata_bytes`]), plus the largest of the decode,
/// each operation (input and output frames both alive, and a watermark's decode and layer
/// beside them) and the encode. `marks` are the image marks' sources in the order of their
/// operations.
///
/// A watermark layer beyond the output limits is EFBIG here, before anything is decoded.
/// `encode` gives the encode stage's bytes (format, output size, alpha):
/// `codec::encode_cost`, or a quality search's (`target::search_cost`).
#[allow(clippy::too_many_arguments)]
pub fn estimate(
    source_len: usize,
    source_format: Format,
    decode: Cost,
    logical: (u32, u32),
    spec: &Spec,
    format: Format,
    marks: &[MarkSource],
    limits: &Limits,
    encode: fn(Format, (u32, u32), bool) -> u64,
) -> Result<u64> {
    // Only JPEG decodes to RGB for sure; anything else may carry alpha.
    let mut bpp = if source_format == Format::Jpeg { 3 } else { 4 };
    let frame = |(w, h): (u32, u32), bpp: u64| u64::from(w) * u64::from(h) * bpp;
    let mut peak = decode.bytes;
    let mut current = frame(decode.size, bpp);
    let mut size = logical;
    let all_marks = marks;
    let mut marks = marks.iter();
    for op in &spec.ops {
        let next = match op {
            Op::Resize(r) => resize::plan(size.0, size.1, r).map_or(size, |p| p.output()),
            Op::Rotate(d) if d % 90 != 0 => {
                let (sin, cos) = f64::from(*d).to_radians().sin_cos();
                let (w, h) = (f64::from(size.0), f64::from(size.1));
                let bound = |v: f64| v.ceil() as u32 + 1;
                (
                    bound(w * cos.abs() + h * sin.abs()),
                    bound(w * sin.abs() + h * cos.abs()),
                )
            }
            Op::Rotate(90 | 270) => (size.1, size.0),
            _ => size,
        };
        if matches!(
            op,
            Op::Circle { .. } | Op::RoundedCorners { .. } | Op::Rotate(_)
        ) {
            bpp = 4;
        }
        let layer = match op {
            Op::Watermark(mark) => {
                let source = match mark.content {
                    WatermarkContent::Image(_) => Some(marks.next().ok_or_else(|| {
                        Error::Encode("memory estimate: an image mark was not probed".into())
                    })?),
                    WatermarkContent::Text(_) => None,
                };
                watermark_bytes(mark, size, source, limits)?
            }
            _ => 0,
        };
        let out = frame(next, bpp);
        peak = peak.max(current + out + layer);
        (current, size) = (out, next);
    }
    peak = peak.max(encode(format, size, bpp == 4));
    let files = source_len as u64 + all_marks.iter().map(|m| m.len as u64).sum::<u64>();
    Ok(files + metadata_bytes(source_len, source_format) + peak + FIXED)
}

/// The colour profile and EXIF a decode carries to the encoder, held from the decode to the
/// end, and the encoder's own copy of them. A PNG stores its profile deflated, so it may
/// inflate to the profile limit from any file; every other format stores both as they are,
/// within the source's bytes (a JPEG's EXIF in one 64 KB segment).
fn metadata_bytes(source_len: usize, format: Format) -> u64 {
    let icc = match format {
        Format::Png => MAX_ICC_BYTES,
        _ => source_len.min(MAX_ICC_BYTES),
    };
    let exif = match format {
        Format::Jpeg => source_len.min(64 << 10),
        _ => source_len.min(MAX_EXIF_BYTES),
    };
    2 * (icc + exif) as u64
}

/// What the estimate knows of an image mark's file before it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkSource {
    pub header: Header,
    /// The file's length: its bytes are held while it decodes.
    pub len: usize,
    /// Its full-size decode.
    pub decode: Cost,
}

/// The bytes a watermark operation holds beside the `base` frame it marks: a text mark's
/// coverage planes (glyphs, shadow), their turned copies and the rasteriser's scratch for
/// one glyph; an image mark's decode and its scaled RGBA layer (its file is held for the
/// whole conversion: [`estimate`] counts it). `image` is the mark's source for an image
/// mark. A layer beyond the output limits is EFBIG.
pub fn watermark_bytes(
    mark: &Watermark,
    base: (u32, u32),
    image: Option<&MarkSource>,
    limits: &Limits,
) -> Result<u64> {
    let (plan, decode) = match (&mark.content, image) {
        (WatermarkContent::Text(t), _) => (watermark::plan_text(t)?, 0),
        (WatermarkContent::Image(m), Some(source)) => (
            watermark::plan_image(m, base.0, &source.header),
            source.decode.bytes,
        ),
        (WatermarkContent::Image(_), None) => {
            return Err(Error::Encode(
                "memory estimate: an image mark without its header".into(),
            ))
        }
    };
    let pixels = |(w, h): (u64, u64)| w.saturating_mul(h);
    let checked = plan.check(limits);
    Ok(match plan {
        LayerPlan::Text {
            drawn,
            placed,
            planes,
            largest_glyph,
        } => {
            checked?;
            let turned = if drawn == placed { 0 } else { pixels(placed) };
            planes * (pixels(drawn) + turned) + largest_glyph * 4
        }
        LayerPlan::Image { decoded, placed } => {
            let scaled = match checked {
                Ok(()) => pixels(placed),
                // Scaled to a base the estimate may see larger than it is (crops do not
                // shrink it here): the operation checks again, before it scales, so no
                // layer beyond the limits is ever made.
                Err(_) if decoded != placed => limits.max_output_pixels,
                Err(e) => return Err(e),
            };
            // The scaling's RGBA output, and the RGBA copy of an RGB one.
            decode + scaled * 8
        }
    })
}

/// An animation is decoded whole (RGBA canvases), mapped frame by frame into new frames,
/// then encoded.
pub fn estimate_animation(source_len: usize, header: &Header) -> u64 {
    let canvas = u64::from(header.width) * u64::from(header.height) * 4;
    source_len as u64 + canvas * header.frames.max(1) * 5 / 2 + FIXED
}

/// Admits conversions in arrival order while the sum of their estimates fits the budget;
/// one larger than the whole budget runs alone.
///
/// A conversion is admitted twice: first for its input files' bytes, before it reads them
/// ([`MemoryGate::reserve_to_read`]), then for its whole estimate, known once the header is
/// read ([`Reservation::grow`]). Growing comes before any new admission, first come first
/// served, and a grower waits only for conversions that are working (admitted for their
/// estimate), which end by themselves: never for one still reading (a read may hang on a
/// dead network file system) or waiting to grow, so when no other conversion is working,
/// the first grower goes on over the budget; the others hold only what they read.
#[derive(Debug)]
pub struct MemoryGate {
    budget: u64,
    state: Mutex<GateState>,
    changed: Condvar,
    /// Told how long each admitted conversion waited (the mount's metrics).
    observer: std::sync::OnceLock<WaitObserver>,
}

struct WaitObserver(Box<dyn Fn(std::time::Duration) + Send + Sync>);

impl std::fmt::Debug for WaitObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitObserver")
    }
}

#[derive(Debug, Default)]
struct GateState {
    in_use: u64,
    running: usize,
    /// The most conversions admitted at once, and the most bytes held (statistics, tests).
    most_running: usize,
    most_in_use: u64,
    /// Tickets: the next to hand out, and the one whose turn it is (first come, first served,
    /// so a stream of small conversions cannot starve a large one).
    next: u64,
    turn: u64,
    /// Running conversions admitted for their estimate (not only to read their inputs),
    /// and how many of them wait to grow again.
    working: usize,
    working_growing: usize,
    /// Running conversions waiting to grow, and their own tickets (first come, first served).
    growing: usize,
    next_grow: u64,
    grow_turn: u64,
}

/// Memory a running conversion holds in the gate's account until it is dropped.
#[must_use = "the reservation is released when dropped"]
pub struct Reservation<'a> {
    gate: &'a MemoryGate,
    bytes: u64,
    /// Admitted for the conversion's estimate, not only to read its inputs.
    working: bool,
}

impl MemoryGate {
    pub fn new(budget: u64) -> MemoryGate {
        MemoryGate {
            budget,
            state: Mutex::new(GateState::default()),
            changed: Condvar::new(),
            observer: std::sync::OnceLock::new(),
        }
    }

    /// Has `observer` told how long each conversion waited before it was admitted (once).
    pub fn observe_waits(&self, observer: impl Fn(std::time::Duration) + Send + Sync + 'static) {
        let _ = self.observer.set(WaitObserver(Box::new(observer)));
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes reserved by running conversions.
    pub fn in_use(&self) -> u64 {
        self.lock().in_use
    }

    /// The most conversions that ran at once.
    pub fn most_running(&self) -> usize {
        self.lock().most_running
    }

    /// The most bytes held at once.
    pub fn most_in_use(&self) -> u64 {
        self.lock().most_in_use
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        // Every update is one step: a panic elsewhere leaves the numbers consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `bytes`, a conversion's estimate, fit beside what runs (or nothing
    /// runs), then reserves them.
    pub fn reserve(&self, bytes: u64) -> Reservation<'_> {
        self.admit(bytes, true)
    }

    /// Like [`MemoryGate::reserve`], for the bytes of a conversion's input files before it
    /// reads them; [`Reservation::grow`] then admits its estimate.
    pub fn reserve_to_read(&self, bytes: u64) -> Reservation<'_> {
        self.admit(bytes, false)
    }

    fn admit(&self, bytes: u64, working: bool) -> Reservation<'_> {
        let arrived = std::time::Instant::now();
        let mut state = self.lock();
        let ticket = state.next;
        state.next += 1;
        while state.turn != ticket
            || state.growing > 0
            || (state.in_use > 0 && state.in_use + bytes > self.budget)
        {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.in_use += bytes;
        state.most_in_use = state.most_in_use.max(state.in_use);
        state.running += 1;
        state.working += usize::from(working);
        state.most_running = state.most_running.max(state.running);
        state.turn += 1;
        tracing::debug!(
            "conversion admitted: {} MiB estimated, {} of {} MiB in use",
            bytes >> 20,
            state.in_use >> 20,
            self.budget >> 20
        );
        drop(state);
        // The next ticket may fit too.
        self.changed.notify_all();
        if let Some(WaitObserver(observe)) = self.observer.get() {
            observe(arrived.elapsed());
        }
        Reservation {
            gate: self,
            bytes,
            working,
        }
    }
}

impl Reservation<'_> {
    /// Waits until the reservation may hold `bytes` (what it holds already counted, so a
    /// conversion never waits on itself), then holds them and is working; a smaller `bytes`
    /// keeps what is held. See [`MemoryGate`] for the order.
    pub fn grow(&mut self, bytes: u64) {
        let extra = bytes.saturating_sub(self.bytes);
        let gate = self.gate;
        let mut state = gate.lock();
        let ticket = state.next_grow;
        state.next_grow += 1;
        state.growing += 1;
        let me = usize::from(self.working);
        state.working_growing += me;
        // Only a working conversion that is not itself waiting to grow ends by itself.
        while state.grow_turn != ticket
            || (state.in_use + extra > gate.budget && state.working > state.working_growing)
        {
            state = gate.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.growing -= 1;
        state.working_growing -= me;
        state.grow_turn += 1;
        state.working += 1 - me;
        self.working = true;
        state.in_use += extra;
        state.most_in_use = state.most_in_use.max(state.in_use);
        tracing::debug!(
            "conversion grown to {} MiB, {} of {} MiB in use",
            bytes >> 20,
            state.in_use >> 20,
            gate.budget >> 20
        );
        drop(state);
        gate.changed.notify_all();
        self.bytes += extra;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.in_use -= self.bytes;
        state.running -= 1;
        state.working -= usize::from(self.working);
        drop(state);
        self.gate.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::half_of_memory;
    use crate::pipeline::codec;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Second hostile review of 2026-12-03: a HEIF was judged at its size as shown, so a
    /// 30000² `ispe` cropped (`clap`) to 64² passed the limits and was admitted for a 64²
    /// decode, while libheif builds the whole coded picture first.
    #[test]
    fn a_heif_is_judged_at_the_size_it_decodes_to_before_its_crop() {
        let header = |coded| codec::Header {
            format: Format::Heic,
            width: 64,
            height: 64,
            frames: 1,
            orientation: image::metadata::Orientation::NoTransforms,
            coded,
            deep: false,
        };
        let limits = Limits::default();
        assert!(crate::pipeline::check_header(&header(None), &limits).is_ok());
        let err = crate::pipeline::check_header(&header(Some((30000, 30000))), &limits);
        assert_eq!(err.map_err(|e| e.errno()), Err(libc::EFBIG), "900 MP");
        let cost = |coded| codec::decode_cost(&[], &header(coded), &Default::default());
        assert_eq!(cost(None).bytes, 64 * 64 * 4 * 5 / 2);
        let cropped = cost(Some((4000, 3000)));
        assert_eq!(cropped.bytes, 4000 * 3000 * 4 * 5 / 2);
        assert_eq!(
            cropped.size,
            (64, 64),
            "operations still see the image as shown"
        );
    }

    #[test]
    fn reservations_wait_until_they_fit_and_a_huge_one_runs_alone() {
        let gate = Arc::new(MemoryGate::new(100));
        let peak = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = [60u64, 30, 50, 250, 10, 40]
            .into_iter()
            .map(|bytes| {
                let (gate, peak) = (gate.clone(), peak.clone());
                std::thread::spawn(move || {
                    let _held = gate.reserve(bytes);
                    let now = gate.in_use();
                    peak.fetch_max(now, Ordering::SeqCst);
                    // The oversized one is alone; the rest never exceed the budget.
                    assert!(now <= 100 || now == bytes, "{now} in use with {bytes}");
                    std::thread::sleep(Duration::from_millis(20));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(gate.in_use(), 0);
        assert!(peak.load(Ordering::SeqCst) >= 250);
    }

    #[test]
    fn arrival_order_is_kept() {
        let gate = Arc::new(MemoryGate::new(100));
        let first = gate.reserve(80);
        let order = Arc::new(Mutex::new(Vec::new()));
        let spawn = |bytes: u64, name: &'static str| {
            let (held_gate, order) = (gate.clone(), order.clone());
            let queued = gate.lock().next + 1;
            let t = std::thread::spawn(move || {
                let _held = held_gate.reserve(bytes);
                order.lock().unwrap().push(name);
            });
            // Until the thread holds its ticket (however slow the machine).
            while gate.lock().next < queued {
                std::thread::yield_now();
            }
            t
        };
        // 95 waits for `first`; 10 would fit now but must not overtake it. (And 10 does not
        // fit beside 95, so "small" is pushed only after "big" let go: the order recorded
        // is the order admitted.)
        let big = spawn(95, "big");
        let small = spawn(10, "small");
        assert!(order.lock().unwrap().is_empty());
        drop(first);
        big.join().unwrap();
        small.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["big", "small"]);
    }

    /// Hostile review of 2026-12-03: a conversion read its source and watermark files (up to
    /// 4 × 20 MB) before the gate counted a byte of them.
    #[test]
    fn growing_comes_before_new_admissions_and_waits_only_for_working_conversions() {
        let gate = MemoryGate::new(100);
        // A grower waits for a working conversion to end, and nothing new is admitted
        // while it waits, though it would fit.
        let admitted = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let working = gate.reserve(60);
            let mut grower = gate.reserve_to_read(10);
            let (gate, admitted) = (&gate, &admitted);
            scope.spawn(move || {
                grower.grow(50);
                grower.grow(20); // smaller: keeps what it holds
                assert!(gate.in_use() >= 50);
            });
            while gate.lock().growing == 0 {
                std::thread::yield_now();
            }
            scope.spawn(move || {
                let _held = gate.reserve(5);
                // The grower's second, smaller grow may come before or after.
                assert!(
                    gate.lock().grow_turn >= 1,
                    "admitted before the grower grew"
                );
                admitted.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(30));
            assert!(!admitted.load(Ordering::SeqCst));
            drop(working);
        });
        assert!(admitted.load(Ordering::SeqCst));
        assert_eq!(gate.in_use(), 0);
    }

    /// Second hostile review of 2026-12-03: two growers that did not fit waited for each
    /// other for ever (and every later conversion behind them); a reader that hangs must
    /// not hold a grower either.
    #[test]
    fn growers_never_wait_for_each_other_or_for_a_reader() {
        let gate = MemoryGate::new(100);
        let hung_reader = gate.reserve_to_read(10);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let working = gate.reserve(40);
            // Both read (admitted before anyone waits to grow, which would hold new
            // admissions), then both wait to grow: the first behind `working`, the second
            // behind the first.
            let readers =
                [(1, 200u64), (2, 50)].map(|(n, estimate)| (n, estimate, gate.reserve_to_read(10)));
            for (n, estimate, mut held) in readers {
                let (tx, gate) = (tx.clone(), &gate);
                scope.spawn(move || {
                    held.grow(estimate);
                    tx.send(estimate).unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                });
                while gate.lock().growing < n {
                    std::thread::yield_now();
                }
            }
            drop(working);
            let patience = Duration::from_secs(10);
            let first = rx
                .recv_timeout(patience)
                .expect("the first grower is stuck");
            let second = rx
                .recv_timeout(patience)
                .expect("the second grower is stuck");
            // The first goes on over the budget (nothing else works), the second after it.
            assert_eq!((first, second), (200, 50));
        });
        assert_eq!(gate.in_use(), 10, "only the reader's bytes are left");
        drop(hung_reader);
    }

    #[test]
    fn the_output_is_kept_while_the_conversion_still_holds_its_memory() {
        let gate = Arc::new(MemoryGate::new(1 << 30));
        let settings = crate::pipeline::Settings::default();
        let mut png = Vec::new();
        image::RgbImage::new(64, 48)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let held = crate::pipeline::convert_into(
            &png,
            &Default::default(),
            &spec("format,bmp"),
            &settings,
            Some(gate.reserve_to_read(png.len() as u64)),
            |out| (out.bytes.len(), gate.in_use()),
        )
        .unwrap();
        assert!(held.0 > 64 * 48 * 3 && held.1 > 0, "{held:?}");
        assert_eq!(gate.in_use(), 0);
    }

    fn spec(text: &str) -> Spec {
        Spec::parse(text, &Default::default()).unwrap()
    }

    /// Second hostile review of 2026-12-03: a conversion estimated above the whole gate ran
    /// alone however large; `--max-conversion-memory` (default half of the machine's memory)
    /// refuses it before it decodes.
    #[test]
    fn a_conversion_estimated_over_max_conversion_memory_is_efbig() {
        let mut png = Vec::new();
        image::RgbImage::new(64, 48)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let mut settings = crate::pipeline::Settings::default();
        assert!(half_of_memory() > 1 << 20, "{}", half_of_memory());
        let convert = |settings: &crate::pipeline::Settings| {
            let spec = spec("format,bmp");
            crate::pipeline::convert(&png, &Default::default(), &spec, settings)
        };
        assert!(convert(&settings).is_ok());
        settings.limits.max_conversion_bytes = Some(4 << 10);
        let err = convert(&settings).err().unwrap();
        assert_eq!(err.errno(), libc::EFBIG);
        assert!(err.to_string().contains("--max-conversion-memory"), "{err}");
    }

    fn jpeg(size: (u32, u32)) -> Cost {
        let bytes = u64::from(size.0) * u64::from(size.1) * 3;
        Cost { size, bytes }
    }

    #[test]
    fn estimates_follow_the_frames_a_conversion_holds() {
        let mp20 = (5472, 3648);
        let frame = 5472 * 3648 * 3;
        let full = estimate(
            0,
            Format::Jpeg,
            jpeg(mp20),
            mp20,
            &spec("format,webp"),
            Format::Webp,
            &[],
            &Limits::default(),
            codec::encode_cost,
        )
        .unwrap();
        assert_eq!(full, frame * 3 / 2 + FIXED);
        // Shrink-on-load to 1/8 and a thumbnail: a fraction of the frame.
        let thumb = estimate(
            0,
            Format::Jpeg,
            jpeg((684, 456)),
            mp20,
            &spec("resize,w_300"),
            Format::Jpeg,
            &[],
            &Limits::default(),
            codec::encode_cost,
        )
        .unwrap();
        assert!(thumb - FIXED < frame / 40, "{thumb}");
        // A full-scale resize holds both frames; BMP holds the frame and its file.
        let half = estimate(
            10,
            Format::Jpeg,
            jpeg(mp20),
            mp20,
            &spec("resize,w_4000@format,bmp"),
            Format::Bmp,
            &[],
            &Limits::default(),
            codec::encode_cost,
        )
        .unwrap();
        let resized = 4000 * 2667 * 3;
        assert_eq!(
            half,
            10 + metadata_bytes(10, Format::Jpeg) + frame + resized + FIXED
        );
        // Hostile review of 2026-12-03: a PNG's colour profile may inflate to 4 MiB from a
        // small file, and it and the EXIF were carried to the encoder uncounted.
        assert_eq!(metadata_bytes(10, Format::Jpeg), 2 * (10 + 10));
        assert!(metadata_bytes(1000, Format::Png) >= 2 * MAX_ICC_BYTES as u64);
        assert_eq!(
            metadata_bytes(100 << 20, Format::Jpeg),
            2 * (MAX_ICC_BYTES as u64 + (64 << 10))
        );
        // A progressive decode's coefficients count even when the rest is small.
        let coefficients = 3 * frame;
        let progressive = estimate(
            0,
            Format::Jpeg,
            Cost {
                size: (684, 456),
                bytes: coefficients,
            },
            mp20,
            &spec("resize,w_300"),
            Format::Jpeg,
            &[],
            &Limits::default(),
            codec::encode_cost,
        )
        .unwrap();
        assert_eq!(progressive, coefficients + FIXED);
        let png = Cost {
            size: (100, 100),
            bytes: 100 * 100 * 4 * 2,
        };
        let upscaled = estimate(
            0,
            Format::Png,
            png,
            (100, 100),
            &spec("resize,w_1000,limit_0"),
            Format::Png,
            &[],
            &Limits::default(),
            codec::encode_cost,
        )
        .unwrap();
        assert!(upscaled >= 1000 * 1000 * 4 * 2);
    }

    fn png(size: (u32, u32)) -> Cost {
        let bytes = u64::from(size.0) * u64::from(size.1) * 4 * 2;
        Cost { size, bytes }
    }

    /// The estimate of `spec` on a 400×400 PNG, with `marks` probed.
    fn marked(spec_text: &str, marks: &[MarkSource]) -> Result<u64> {
        let base = (400, 400);
        let limits = Limits::default();
        let s = spec(spec_text);
        estimate(
            0,
            Format::Png,
            png(base),
            base,
            &s,
            Format::Png,
            marks,
            &limits,
            codec::encode_cost,
        )
    }

    fn text(rest: &str) -> String {
        let text = crate::spec::encode_base64(&"水".repeat(64));
        format!("watermark,text_{text}{rest}")
    }

    /// The layer bytes of the watermark `spec_text` on a 400×400 base; the estimate holds
    /// them beside the base's two frames.
    fn layer(spec_text: &str, marks: &[MarkSource]) -> Result<u64> {
        let Op::Watermark(mark) = &spec(spec_text).ops[0] else {
            panic!("not a watermark: {spec_text}")
        };
        let bytes = watermark_bytes(mark, (400, 400), marks.first(), &Limits::default())?;
        let whole = marked(spec_text, marks)?;
        assert!(whole >= 2 * 400 * 400 * 4 + bytes + FIXED, "{spec_text}");
        Ok(bytes)
    }

    #[test]
    fn text_marks_count_their_layers() {
        let small = layer(&text(",size_20"), &[]).unwrap();
        let large = layer(&text(",size_60"), &[]).unwrap();
        let shadowed = layer(&text(",size_60,shadow_50"), &[]).unwrap();
        let turned = layer(&text(",size_60,shadow_50,rotate_30"), &[]).unwrap();
        assert!(small < large && large < shadowed && shadowed < turned);
        // 64 glyphs of 60 px are about 3000×60 px: one plane, a second for the shadow, and
        // a turned copy of both (about 2630×1550 px) beside them.
        assert!(large >= 3000 * 60, "{large}");
        assert!(shadowed - large >= 3000 * 60);
        assert!(turned - shadowed >= 2 * 2600 * 1500);
        // Bounded by the limits: two planes, each turned, none larger than the largest output.
        let limit = 16_777_216;
        assert!(layer(&text(",size_100,shadow_1,rotate_45"), &[]).unwrap() < 4 * limit + MIB);
    }

    #[test]
    fn oversized_text_marks_are_efbig_in_the_estimate() {
        for rest in [",size_200,rotate_45", ",size_400", ",size_1000,fill_1"] {
            let result = marked(&text(rest), &[]);
            assert!(
                matches!(result, Err(Error::TooLarge(_))),
                "{rest}: {result:?}"
            );
        }
    }

    fn mark_source(w: u32, h: u32) -> MarkSource {
        let header = Header {
            format: Format::Png,
            width: w,
            height: h,
            frames: 1,
            orientation: image::metadata::Orientation::NoTransforms,
            coded: None,
            deep: false,
        };
        MarkSource {
            header,
            len: 200_000,
            decode: png((w, h)),
        }
    }

    #[test]
    fn image_marks_count_their_file_decode_and_layer() {
        let mark = |path: &str| format!("watermark,image_{}", crate::spec::encode_base64(path));
        let small = layer(&mark("m.png"), &[mark_source(100, 50)]).unwrap();
        assert!(small >= 100 * 50 * 4 * 3, "{small}");
        // 8000×8000 is a valid source but not a layer; scaled to 10 % of the base it is, and
        // then its full decode counts.
        let huge = [mark_source(8000, 8000)];
        assert!(matches!(
            marked(&mark("m.png"), &huge),
            Err(Error::TooLarge(_))
        ));
        let scaled = layer(&mark("m.png?x-oss-process=image/resize,P_10"), &huge).unwrap();
        assert!(scaled >= 8000 * 8000 * 4, "{scaled}");
        // Two marks: each op takes its own source, in order.
        let two = format!("{}@{}", mark("a.png"), mark("b.png"));
        let plain = marked("format,png", &[]).unwrap();
        let both = marked(&two, &[mark_source(10, 10), mark_source(1000, 1000)]).unwrap();
        assert!(both - plain >= 1000 * 1000 * 4 * 3, "{}", both - plain);
        assert!(marked(&two, &[mark_source(10, 10)]).is_err());
        // Hostile review of 2026-12-03: every mark's file is read before the conversion and
        // held to its end, but only the one of the operation running was counted.
        let three = vec![mark("m.png"); 3].join("@");
        let files = marked(&three, &[mark_source(10, 10); 3]).unwrap();
        let one = marked(&mark("m.png"), &[mark_source(10, 10)]).unwrap();
        assert!(files - one >= 2 * 200_000, "{}", files - one);
    }

    #[test]
    fn a_hostile_mark_fails_before_the_gate() {
        let gate = Arc::new(MemoryGate::new(1 << 30));
        let settings = crate::pipeline::Settings::default();
        let mut png = Vec::new();
        image::RgbImage::new(1, 1)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let result = crate::pipeline::convert_into(
            &png,
            &Default::default(),
            &spec(&text(",size_1000")),
            &settings,
            Some(gate.reserve_to_read(png.len() as u64)),
            |out| out,
        );
        assert!(matches!(result, Err(Error::TooLarge(_))), "{result:?}");
        assert_eq!(gate.most_in_use(), png.len() as u64, "never grown");
    }
}
