//! Caption rules for image–caption pairs: length, language, boilerplate captions
//! (file names, URLs, "图片", "image", camera names) and block-listed words.

use std::collections::HashSet;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::script::{Lang, LangScores};
use crate::text::TermMatcher;
use crate::Drop;

pub mod rule {
    pub const MIN_CHARS: &str = "pair.min_chars";
    pub const MAX_CHARS: &str = "pair.max_chars";
    pub const LANG: &str = "pair.lang";
    pub const BOILERPLATE: &str = "pair.boilerplate";
    pub const BLOCKLIST: &str = "pair.blocklist";
    pub const ALL: &[&str] = &[MIN_CHARS, MAX_CHARS, LANG, BOILERPLATE, BLOCKLIST];
}

/// Captions that say nothing about the image, compared after trimming, lower-casing
/// and stripping trailing digits/punctuation ("图片1", "Image 2:").
const BOILERPLATE_WORDS: &[&str] = &[
    "图片", "图像", "图", "照片", "截图", "屏幕截图", "插图", "配图", "缩略图", "大图", "点击查看大图", "点击放大", "查看原图", "原图", "图标", "头像", "广告", "logo", "image",
    "images", "img", "picture", "pic", "photo", "photos", "screenshot", "screen shot", "thumbnail", "icon", "banner", "untitled", "figure", "fig", "click to enlarge",
    "no image", "placeholder", "spacer", "null", "none", "undefined", "图片描述", "在此处输入图片描述",
];

/// `[filter.pair]`: rules for the caption of each pair (its image goes through
/// `[filter.image]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PairConfig {
    /// `pair.min_chars`: drop captions with fewer characters. Default 2.
    pub min_chars: usize,
    /// `pair.max_chars`: drop captions with more characters. Default 300.
    pub max_chars: usize,
    /// `pair.lang`: languages kept (`zh`, `en`, `other`). Default ["zh", "en"].
    pub languages: Vec<String>,
    /// `pair.lang`: drop captions where no kept language reaches this share of the
    /// letters. Default 0.5.
    pub min_lang_score: f64,
    /// `pair.boilerplate`: more captions to treat as boilerplate (compared like the
    /// built-in ones: trimmed, lower-case, trailing digits stripped).
    pub boilerplate: Vec<String>,
}

impl Default for PairConfig {
    fn default() -> Self {
        PairConfig { min_chars: 2, max_chars: 300, languages: vec!["zh".into(), "en".into()], min_lang_score: 0.5, boilerplate: vec![] }
    }
}

impl PairConfig {
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        if self.max_chars < self.min_chars {
            return Err(format!("{prefix}.max_chars = {} is below {prefix}.min_chars = {}", self.max_chars, self.min_chars));
        }
        if !(0.0..=1.0).contains(&self.min_lang_score) {
            return Err(format!("{prefix}.min_lang_score = {}: must be a ratio between 0 and 1", self.min_lang_score));
        }
        for l in &self.languages {
            if Lang::parse(l).is_none() {
                return Err(format!("{prefix}.languages has unknown language `{l}` (expected zh, en or other)"));
            }
        }
        Ok(())
    }
}

fn shapes() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    // A bare file name, a URL or path, or a camera/upload name (IMG_1234, DSC01234, 微信图片_2020...).
    R.get_or_init(|| {
        Regex::new(r"(?i)^(?:[\w\-. ()]+\.(?:jpe?g|png|gif|webp|bmp|svg|tiff?|ico|heic)|(?:https?://|ftp://|www\.|/|\./|[a-z]:\\)\S*|(?:img|dsc|dscn|dcim|pxl|mvimg|screenshot|wechatimg|微信图片|屏幕快照|截屏)[\s_\-]*[\d_\- .]*)$").unwrap()
    })
}

fn canonical(caption: &str) -> String {
    let lower = caption.trim().to_lowercase();
    lower.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation() || c.is_whitespace() || "：:．。、".contains(c)).trim().to_string()
}

pub struct CaptionRules {
    pub cfg: PairConfig,
    disabled: HashSet<&'static str>,
    langs: Vec<Lang>,
    boilerplate: HashSet<String>,
}

impl CaptionRules {
    pub fn new(cfg: PairConfig, disabled: HashSet<&'static str>, prefix: &str) -> Result<Self, String> {
        cfg.validate(prefix)?;
        let langs = cfg.languages.iter().filter_map(|l| Lang::parse(l)).collect();
        let boilerplate = BOILERPLATE_WORDS.iter().map(|s| s.to_string()).chain(cfg.boilerplate.iter().map(|s| canonical(s))).collect();
        Ok(CaptionRules { cfg, disabled, langs, boilerplate })
    }

    fn on(&self, r: &str) -> bool {
        !self.disabled.contains(r)
    }

    pub fn check(&self, caption: &str, blocklist: &TermMatcher) -> Option<Drop> {
        let c = &self.cfg;
        let n = caption.trim().chars().count();
        if self.on(rule::MIN_CHARS) && n < c.min_chars {
            return Some(Drop { rule: rule::MIN_CHARS, value: n as f64, threshold: c.min_chars as f64, detail: None });
        }
        if self.on(rule::MAX_CHARS) && n > c.max_chars {
            return Some(Drop { rule: rule::MAX_CHARS, value: n as f64, threshold: c.max_chars as f64, detail: None });
        }
        if self.on(rule::BOILERPLATE) {
            let t = caption.trim();
            if self.boilerplate.contains(&canonical(t)) || shapes().is_match(t) {
                return Some(Drop { rule: rule::BOILERPLATE, value: 1.0, threshold: 0.0, detail: None });
            }
        }
        if self.on(rule::LANG) {
            let s = LangScores::of(caption);
            let best = self.langs.iter().map(|l| s.score(*l)).fold(0.0, f64::max);
            if best < c.min_lang_score {
                return Some(Drop { rule: rule::LANG, value: best, threshold: c.min_lang_score, detail: Some(format!("detected {}", s.best().name())) });
            }
        }
        if self.on(rule::BLOCKLIST) {
            let (hits, _) = blocklist.hits(caption);
            if hits > 0 {
                return Some(Drop { rule: rule::BLOCKLIST, value: hits as f64, threshold: 0.0, detail: None });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boilerplate_captions() {
        let r = CaptionRules::new(PairConfig::default(), HashSet::new(), "filter.pair").unwrap();
        let bl = TermMatcher::new(&[]).unwrap();
        // Real captions from the Debian Handbook figures are kept.
        for keep in ["图 3.1. 安装程序的启动画面", "Figure 8.1. Configuring the network", "宇航员在太空"] {
            assert_eq!(r.check(keep, &bl), None, "{keep}");
        }
        for drop in ["图片", "图片1", "Image 2:", "IMG_20190312_0012", "DSC01234", "astronaut.png", "https://example.org/a.jpg", "/images/logo.png", "点击查看大图", "微信图片_20200101"] {
            assert_eq!(r.check(drop, &bl).map(|d| d.rule), Some(rule::BOILERPLATE), "{drop}");
        }
        assert_eq!(r.check("猫", &bl).map(|d| d.rule), Some(rule::MIN_CHARS));
        assert_eq!(r.check("Кошка на диване", &bl).map(|d| d.rule), Some(rule::LANG));
    }
}
