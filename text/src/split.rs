//! Lines and paragraphs as the filter's repetition rules count them (Gopher's duplicate
//! line and paragraph fractions): trimmed, blank ones skipped.

/// The non-blank lines of `text`, trimmed.
pub fn nonblank_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// A sentence as the character language model reads it: one non-blank line (from
/// [`nonblank_lines`], so already trimmed) with every inner run of whitespace as one
/// ' ', passed to `f` character by character.
pub fn for_each_collapsed(line: &str, mut f: impl FnMut(char)) {
    let mut space = false;
    for c in line.chars() {
        if c.is_whitespace() {
            space = true;
        } else {
            if space {
                f(' ');
                space = false;
            }
            f(c);
        }
    }
}

/// Paragraphs: blocks of lines separated by blank lines, each line trimmed and the
/// lines of a block joined with `\n`.
pub fn paragraphs(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    for l in text.lines() {
        if l.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            if !cur.is_empty() {
                cur.push('\n');
            }
            cur.push_str(l.trim());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_paragraphs() {
        let t = "  第一行 \n第二行\n\n \n第三段\n  末行  ";
        assert_eq!(nonblank_lines(t).collect::<Vec<_>>(), ["第一行", "第二行", "第三段", "末行"]);
        assert_eq!(paragraphs(t), ["第一行\n第二行", "第三段\n末行"]);
        let mut out = String::new();
        for l in nonblank_lines(" a \u{3000}b\t\tc \n\n\t\n第二 句\r\n") {
            for_each_collapsed(l, |c| out.push(c));
            out.push('|');
        }
        assert_eq!(out, "a b c|第二 句|");
        assert!(paragraphs(" \n\n").is_empty());
    }
}
