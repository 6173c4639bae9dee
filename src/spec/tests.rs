use super::*;

fn parse(text: &str) -> Spec {
    Spec::parse(text, &Styles::default()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn canonical(text: &str) -> String {
    parse(text).canonical()
}

fn error(text: &str) -> String {
    match Spec::parse(text, &Styles::default()) {
        Ok(spec) => panic!("{text} parsed as {spec:?}"),
        Err(e) => {
            assert_eq!(e.errno(), libc::EINVAL, "{text}: {e}");
            e.to_string()
        }
    }
}

#[test]
fn every_operation_parses() {
    let chains = [
        "resize,w_100",
        "resize,m_lfit,w_150,h_80",
        "resize,m_mfit,w_150,h_80",
        "resize,m_fill,w_150,h_80",
        "resize,m_pad,w_150,h_80,color_FF0000",
        "resize,m_fixed,w_150,h_80",
        "resize,l_900,s_600",
        "resize,p_50",
        "resize,w_2000,limit_0",
        "crop,w_100,h_100,x_10,y_10,g_center",
        "indexcrop,x_100,i_2",
        "indexcrop,y_100",
        "circle,r_100",
        "rounded-corners,r_30",
        "rotate,90",
        "flip,h",
        "flip,v",
        "flip,hv",
        "blur,r_3,s_2",
        "bright,50",
        "contrast,-20",
        "sharpen,100",
        "auto-orient,0",
        "auto-orient,1",
        "interlace,1",
        "format,webp",
        "quality,Q_80",
        "quality,q_90",
        "info",
        "average-hue",
        "watermark,text_SGVsbG8",
        "watermark,image_cGFuZGEucG5n,t_50,g_nw,x_5,y_5",
        "watermark,text_5rC05Y2w,color_FF0000,size_30,shadow_50,rotate_45,fill_1,voffset_-10",
    ];
    for chain in chains {
        parse(chain);
        // The canonical form parses to the same spec.
        let c = canonical(chain);
        if !c.is_empty() {
            assert_eq!(parse(&c), parse(chain), "{chain} -> {c}");
        }
    }
}

#[test]
fn both_spellings_are_one_spec() {
    assert_eq!(
        parse("format,heic@resize,l_900"),
        parse("image/format,heic/resize,l_900")
    );
}

#[test]
fn equal_meanings_share_one_canonical_form() {
    let groups: &[&[&str]] = &[
        &[
            "resize,w_150,h_80",
            "resize,h_80,w_150",
            "resize,m_lfit,w_150,h_80,limit_1",
            "resize,w_150,h_80,l_500",
            "resize,w_150,h_80,color_FFFFFF",
        ],
        &["format,jpg", "format,jpeg"],
        &[
            "format,webp@resize,w_10",
            "resize,w_10@format,webp",
            "image/resize,w_10/format,webp",
        ],
        &["quality,Q_80", "quality,Q_80,q_50", "quality,q_50,Q_80"],
        &["crop,w_10,g_nw,x_0", "crop,w_10"],
        &["auto-orient,1@rotate,0", "bright,0", "contrast,0", ""],
        &["interlace,0@format,png", "format,png"],
        &["flip,hv", "flip,vh"],
        &["indexcrop,x_5,y_10", "indexcrop,y_10,i_0"],
    ];
    for group in groups {
        let first = if group[0].is_empty() {
            String::new()
        } else {
            canonical(group[0])
        };
        for text in group.iter().filter(|t| !t.is_empty()) {
            assert_eq!(canonical(text), first, "{text} vs {}", group[0]);
        }
    }
}

#[test]
fn canonical_form_is_stable() {
    assert_eq!(
        canonical("resize,l_900,h_600@format,heic"),
        "resize,h_600@format,heic"
    );
    assert_eq!(
        canonical("quality,q_80@auto-orient,0@resize,p_50,limit_0"),
        "auto-orient,0@resize,p_50,limit_0@quality,q_80"
    );
    assert_eq!(
        canonical("resize,m_pad,w_10,color_00ff00"),
        "resize,m_pad,w_10,color_00FF00"
    );
}

#[test]
fn errors_name_the_operation_argument_and_range() {
    let cases = [
        ("resize,w_0", &["resize w", "[1, 16384]"][..]),
        ("resize,w_16385", &["resize w", "16384"]),
        ("resize,p_1001", &["resize p", "[1, 1000]"]),
        ("resize,m_stretch,w_10", &["resize m", "lfit"]),
        ("resize,limit_2,w_10", &["resize limit", "[0, 1]"]),
        ("resize,color_GGGGGG,w_1", &["resize color", "RRGGBB"]),
        ("resize,m_fill", &["resize", "at least one"]),
        ("resize,z_1", &["resize", "unknown key 'z'"]),
        ("resize,w_10,w_20", &["resize", "twice"]),
        ("resize,w_abc", &["resize w", "not a whole number"]),
        ("resize,w_-5", &["resize w", "out of range"]),
        ("resize,w", &["resize", "key_value"]),
        ("rotate,361", &["rotate", "[0, 360]"]),
        ("rotate", &["rotate", "missing value"]),
        ("rotate,1,2", &["rotate", "one value"]),
        ("bright,101", &["bright", "[-100, 100]"]),
        ("contrast,-101", &["contrast", "[-100, 100]"]),
        ("sharpen,49", &["sharpen", "[50, 399]"]),
        ("blur,r_3", &["blur", "missing required key 's'"]),
        ("blur,r_51,s_1", &["blur r", "[1, 50]"]),
        ("circle,r_0", &["circle r", "[1, 4096]"]),
        (
            "rounded-corners,r_4097",
            &["rounded-corners r", "[1, 4096]"],
        ),
        ("flip,x", &["flip", "h, v, hv"]),
        ("indexcrop,x_0", &["indexcrop x", "[1, 30000]"]),
        ("indexcrop,i_1", &["indexcrop", "needs x or y"]),
        ("crop,g_middle", &["crop g", "center"]),
        ("format,jpg2000", &["format", "heic"]),
        ("quality,Q_0", &["quality Q", "[1, 100]"]),
        ("quality,q_101", &["quality q", "[1, 100]"]),
        ("quality,Q_80@quality,Q_70", &["quality", "more than once"]),
        ("interlace,2", &["interlace", "[0, 1]"]),
        ("auto-orient,yes", &["auto-orient", "not a whole number"]),
        ("info,1", &["info", "no arguments"]),
        ("info@average-hue", &["more than once"]),
        ("sepia,1", &["unknown operation 'sepia'"]),
        ("resize,w_10@@format,png", &["empty operation"]),
        ("style,nope", &["style", "nope"]),
        ("watermark,text_@@@", &["watermark"]),
        ("watermark,t_50", &["watermark", "needs text or image"]),
        ("watermark,text_SGk,t_101", &["watermark t", "[0, 100]"]),
        ("watermark,text_SGk,type_Zm9v", &["watermark type", "foo"]),
        (
            "watermark,image_YS5wbmc,size_10",
            &["watermark", "text marks only"],
        ),
        (
            "resize,w_99999999999999999999",
            &["resize w", "not a whole number"],
        ),
    ];
    for (text, needles) in cases {
        let message = error(text);
        for needle in needles {
            assert!(
                message.contains(needle),
                "{text}: '{message}' lacks '{needle}'"
            );
        }
    }
}

#[test]
fn too_many_operations_are_refused() {
    let chain = vec!["bright,1"; MAX_OPS + 1].join("@");
    assert!(error(&chain).contains("more than"));
    let ok = vec!["bright,1"; MAX_OPS].join("@");
    assert_eq!(parse(&ok).ops.len(), MAX_OPS);
}

#[test]
fn at_most_three_image_watermarks() {
    let mark = "watermark,image_YS5wbmc";
    parse(&[mark; 3].join("@"));
    assert!(error(&[mark; 4].join("@")).contains("at most 3"));
}

#[test]
fn mark_paths_are_the_image_watermarks_once_each() {
    // a.png, b.png, a.png again, and a text mark.
    let spec = parse("watermark,image_YS5wbmc@watermark,image_Yi5wbmc@watermark,image_YS5wbmc,t_50@watermark,text_SGk");
    assert_eq!(spec.mark_paths(), ["a.png", "b.png"]);
    assert!(parse("resize,w_10").mark_paths().is_empty());
}

#[test]
fn styles_expand_and_do_not_nest() {
    let mut styles = Styles::default();
    styles.add("thumb", "resize,w_100@format,webp").unwrap();
    let spec = Spec::parse("style,thumb", &styles).unwrap();
    assert_eq!(spec.canonical(), "resize,w_100@format,webp");
    assert!(styles.add("bad name!", "resize,w_1").is_err());
    assert!(styles.add("broken", "resize,w_0").is_err());
    let mut nested = Styles::default();
    nested.chains.insert("loop".into(), "style,loop".into());
    let err = Spec::parse("style,loop", &nested).unwrap_err();
    assert!(err.to_string().contains("cannot use another style"));
}

#[test]
fn styles_file_is_read() {
    let mut styles = Styles::default();
    styles
        .add_file("# comment\n\nsmall = resize,w_10\nheic=image/format,heic\n")
        .unwrap();
    assert_eq!(styles.len(), 2);
    assert!(styles.add_file("no equals sign").is_err());
}

#[test]
fn watermark_values_decode() {
    let spec = parse("watermark,text_SGVsbG8sIOS4lueVjA,color_FF0000");
    let Op::Watermark(w) = &spec.ops[0] else {
        panic!()
    };
    let WatermarkContent::Text(t) = &w.content else {
        panic!()
    };
    assert_eq!(t.text, "Hello, 世界");
    assert_eq!(t.color, [255, 0, 0]);
    assert_eq!(w.gravity, Gravity::SouthEast);
    let image = encode_base64("logo.png?x-oss-process=image/resize,P_30");
    let spec = parse(&format!("watermark,image_{image}"));
    let Op::Watermark(w) = &spec.ops[0] else {
        panic!()
    };
    assert_eq!(
        w.content,
        WatermarkContent::Image(ImageMark {
            path: "logo.png".into(),
            percent: Some(30)
        })
    );
}

#[test]
fn gravity_origins_follow_the_grammar() {
    // docs/operations.md: north (W/2-w/2, 0), center (W/2-w/2, H/2-h/2), se (W-w, H-h).
    assert_eq!(Gravity::North.origin(400, 300, 100, 50), (150, 0));
    assert_eq!(Gravity::Center.origin(400, 300, 100, 50), (150, 125));
    assert_eq!(Gravity::SouthEast.origin(400, 300, 100, 50), (300, 250));
    assert_eq!(Gravity::NorthWest.origin(400, 300, 100, 50), (0, 0));
}

/// Found by fuzzing: `color` without `m_pad` survived parsing but not the canonical form.
#[test]
fn resize_color_without_pad_round_trips() {
    for text in ["image/resize,h_80,color_FF0000", "resize,w_1,color_000000"] {
        let spec = parse(text);
        assert_eq!(parse(&spec.canonical()), spec, "{text}");
    }
}
