//! Several conversions of one source at once: `imgfs warm` asks for every spec of an image
//! together, and the decode (often the larger part of a resized conversion, and all of it
//! for a progressive JPEG or a HEIC source) is then done once for every still conversion
//! that starts from the same pixels. Each output is the one [`super::convert`] gives for
//! its spec alone, byte for byte: conversions share a decode only when they agree on the
//! decoded size (a JPEG's shrink-on-load scale) and on `auto-orient`.

use std::ops::ControlFlow;

use image::DynamicImage;

use super::{
    convert_into, decode_still, finish, plan, probe, Marks, Output, Plan, Settings, StillPlan,
};
use crate::error::Result;
use crate::pipeline::memory::MemoryGate;
use crate::spec::Spec;

/// One conversion of the batch: its spec and the watermark images it names.
pub type Job<'a> = (&'a Spec, &'a Marks);

/// Runs every job on the image in `source` and hands each result to `each` with the job's
/// index, as soon as it is ready; `each` breaks to stop before the next conversion (the
/// jobs not run are not answered). Conversions that share a decode are admitted by `gate`
/// together: the largest of their estimates plus the decoded image kept for the next.
pub fn convert_each(
    source: &[u8],
    jobs: &[Job<'_>],
    settings: &Settings,
    gate: Option<&MemoryGate>,
    mut each: impl FnMut(usize, Result<Output>) -> ControlFlow<()>,
) {
    let alone = |index: usize, each: &mut dyn FnMut(usize, Result<Output>) -> ControlFlow<()>| {
        let (spec, marks) = jobs[index];
        each(
            index,
            // The source was read by the caller; the marks are counted by the estimate.
            convert_into(
                source,
                marks,
                spec,
                settings,
                gate.map(|g| g.reserve_to_read(0)),
                |o| o,
            ),
        )
    };
    let Ok(header) = probe(source, &settings.limits) else {
        // Each conversion reports the error itself.
        for index in 0..jobs.len() {
            if alone(index, &mut each).is_break() {
                return;
            }
        }
        return;
    };
    // Still conversions grouped by the decode they start from; the rest one by one.
    let mut groups: Vec<Vec<(usize, StillPlan)>> = Vec::new();
    for (index, (spec, marks)) in jobs.iter().enumerate() {
        match plan(source, &header, marks, spec, settings) {
            Ok(Plan::Still(still)) => {
                let shares = |group: &&mut Vec<(usize, StillPlan)>| {
                    let (first, plan) = &group[0];
                    plan.decoded_size == still.decoded_size
                        && jobs[*first].0.auto_orient == spec.auto_orient
                };
                match groups.iter_mut().find(shares) {
                    Some(group) => group.push((index, still)),
                    None => groups.push(vec![(index, still)]),
                }
            }
            _ => {
                if alone(index, &mut each).is_break() {
                    return;
                }
            }
        }
    }
    for group in groups {
        if let [(index, _)] = group[..] {
            if alone(index, &mut each).is_break() {
                return;
            }
            continue;
        }
        let (w, h) = group[0].1.decoded_size;
        let kept = u64::from(w) * u64::from(h) * 4;
        let most = group.iter().map(|(_, plan)| plan.estimate).max();
        let _reserved = gate.map(|g| g.reserve(most.unwrap_or(0) + kept));
        let mut decoded = match decode_still(source, &header, &group[0].1) {
            Ok(decoded) => decoded,
            Err(err) => {
                for (index, _) in &group {
                    if each(*index, Err(err.clone())).is_break() {
                        return;
                    }
                }
                continue;
            }
        };
        let last = group.len() - 1;
        for (n, (index, plan)) in group.iter().enumerate() {
            let image = if n == last {
                std::mem::replace(&mut decoded.image, DynamicImage::new_rgb8(0, 0))
            } else {
                decoded.image.clone()
            };
            let (spec, marks) = jobs[*index];
            let result = finish(
                image, &decoded, source, &header, marks, spec, settings, plan,
            );
            if each(*index, result).is_break() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::convert;
    use crate::spec::Styles;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x ^ y) % 256) as u8,
            ])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(image)
            .write_to(&mut out, image::ImageFormat::Jpeg)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn each_output_is_the_one_its_spec_gives_alone() {
        let source = jpeg(640, 480);
        let texts = [
            "resize,l_100@format,webp",
            "resize,l_100@format,png",
            "resize,l_300@format,jpg",
            "format,png",
            "resize,l_100@rotate,90@format,png",
            "info",
            "auto-orient,0@resize,l_100@format,png",
            "resize,w_16384,limit_0@format,png",
        ];
        let specs: Vec<Spec> = texts
            .iter()
            .map(|t| Spec::parse(t, &Styles::default()).unwrap())
            .collect();
        let marks = Marks::default();
        let jobs: Vec<Job> = specs.iter().map(|s| (s, &marks)).collect();
        let settings = Settings::default();
        let gate = MemoryGate::new(1 << 30);
        let mut seen = vec![None; jobs.len()];
        convert_each(&source, &jobs, &settings, Some(&gate), |i, result| {
            assert!(seen[i].is_none(), "job {i} answered twice");
            seen[i] = Some(result.map(|o| o.bytes));
            ControlFlow::Continue(())
        });
        for (i, spec) in specs.iter().enumerate() {
            let alone = convert(&source, &marks, spec, &settings).map(|o| o.bytes);
            assert_eq!(seen[i].as_ref(), Some(&alone), "{}", texts[i]);
        }
        assert!(seen.last().unwrap().as_ref().unwrap().is_err());
    }

    #[test]
    fn a_break_stops_before_the_next_conversion() {
        let source = jpeg(64, 48);
        let spec = Spec::parse("resize,l_10@format,png", &Styles::default()).unwrap();
        let marks = Marks::default();
        let mut answered = 0;
        convert_each(
            &source,
            &[(&spec, &marks); 3],
            &Settings::default(),
            None,
            |_, _| {
                answered += 1;
                ControlFlow::Break(())
            },
        );
        assert_eq!(answered, 1);
    }

    #[test]
    fn a_source_that_is_not_an_image_fails_every_job() {
        let spec = Spec::parse("format,png", &Styles::default()).unwrap();
        let marks = Marks::default();
        let mut errors = 0;
        convert_each(
            b"not an image",
            &[(&spec, &marks); 3],
            &Settings::default(),
            None,
            |_, r| {
                errors += usize::from(r.is_err());
                ControlFlow::Continue(())
            },
        );
        assert_eq!(errors, 3);
    }
}
