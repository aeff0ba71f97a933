//! Splitting a document into the passages that are indexed, searched and cited: about
//! [`TARGET`] characters each, the next one repeating up to [`OVERLAP`] characters of the one
//! before, cut between paragraphs, lines or sentences where the text has them.

/// The most characters of a chunk.
pub const TARGET: usize = 1600;
/// The most characters a chunk repeats from the one before.
pub const OVERLAP: usize = 200;
// A piece longer than this is cut at spaces, so that overlap + piece + joiner fits in TARGET.
const LONGEST_PIECE: usize = TARGET - OVERLAP - 2;

/// How a piece is joined to the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Join {
    Paragraph,
    Line,
    Sentence,
}

impl Join {
    fn text(self) -> &'static str {
        match self {
            Self::Paragraph => "\n\n",
            Self::Line => "\n",
            Self::Sentence => " ",
        }
    }
}

/// The chunks of `text`, in order; none for blank text.
pub fn chunks(text: &str) -> Vec<String> {
    let pieces = pieces(text);
    let mut out = Vec::new();
    let mut current: Vec<(Join, &str)> = Vec::new();
    let mut fresh = false;
    for (join, piece) in pieces {
        if fresh && len_of(&current) + join.text().len() + chars(piece) > TARGET {
            let tail = overlap(&current);
            out.push(render(&current));
            current = tail;
        }
        let join = if current.is_empty() {
            Join::Paragraph
        } else {
            join
        };
        current.push((join, piece));
        fresh = true;
    }
    if fresh {
        out.push(render(&current));
    }
    out
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn len_of(parts: &[(Join, &str)]) -> usize {
    parts
        .iter()
        .enumerate()
        .map(|(i, (j, p))| chars(p) + if i == 0 { 0 } else { j.text().len() })
        .sum()
}

fn render(parts: &[(Join, &str)]) -> String {
    let mut s = String::new();
    for (i, (join, piece)) in parts.iter().enumerate() {
        if i > 0 {
            s.push_str(join.text());
        }
        s.push_str(piece);
    }
    s
}

/// The last whole pieces of `parts` that fit in [`OVERLAP`]; when even the last one is longer,
/// its end, cut at a space.
fn overlap<'a>(parts: &[(Join, &'a str)]) -> Vec<(Join, &'a str)> {
    let mut tail = Vec::new();
    let mut used = 0;
    for (join, piece) in parts.iter().rev() {
        let n = chars(piece) + usize::from(!tail.is_empty());
        if used + n > OVERLAP {
            break;
        }
        used += n;
        tail.insert(0, (*join, *piece));
    }
    if tail.is_empty() {
        if let Some((_, last)) = parts.last() {
            let start = last
                .char_indices()
                .rev()
                .nth(OVERLAP - 1)
                .map_or(0, |(i, _)| i);
            let end = &last[start..];
            let end = end.split_once(' ').map_or(end, |(_, rest)| rest).trim();
            if !end.is_empty() {
                tail.push((Join::Paragraph, end));
            }
        }
    }
    tail
}

/// The text as paragraphs, lines and sentences, each at most [`LONGEST_PIECE`] characters.
fn pieces(text: &str) -> Vec<(Join, &str)> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n") {
        let mut join = Join::Paragraph;
        for line in paragraph.lines() {
            let line = line.trim_end();
            if line.trim().is_empty() {
                continue;
            }
            for (k, sentence) in sentences(line).into_iter().enumerate() {
                let j = if k == 0 { join } else { Join::Sentence };
                for (m, part) in cut(sentence, LONGEST_PIECE).into_iter().enumerate() {
                    out.push((if m == 0 { j } else { Join::Sentence }, part));
                }
            }
            join = Join::Line;
        }
    }
    out
}

/// `line` split after `.`, `!` or `?` followed by a space.
pub fn sentences(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = line.as_bytes();
    for i in 0..bytes.len().saturating_sub(1) {
        if matches!(bytes[i], b'.' | b'!' | b'?') && bytes[i + 1] == b' ' {
            let s = line[start..=i].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = i + 1;
        }
    }
    let s = line[start..].trim();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

/// `s` in parts of at most `max` characters, cut at spaces where there are any.
fn cut(s: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while chars(rest) > max {
        let limit = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let at = rest[..limit].rfind(' ').filter(|&i| i > 0).unwrap_or(limit);
        out.push(rest[..at].trim());
        rest = rest[at..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentence(i: usize) -> String {
        format!("Sentence number {i} says something about the platform and its rules.")
    }

    #[test]
    fn a_short_text_is_one_chunk_and_blank_text_none() {
        assert_eq!(chunks("# Title\n\nOne line."), ["# Title\n\nOne line."]);
        assert!(chunks("  \n\n ").is_empty());
    }

    #[test]
    fn long_text_is_cut_between_sentences_with_an_overlap() {
        let text: Vec<String> = (0..100).map(sentence).collect();
        let text = text.join(" ");
        let out = chunks(&text);
        assert!(out.len() > 3, "{}", out.len());
        for pair in out.windows(2) {
            assert!(pair[0].chars().count() <= TARGET);
            // The next chunk starts with the last sentences of this one.
            let first = pair[1].split(". ").next().unwrap();
            assert!(pair[0].contains(first), "{first}");
            assert!(first.len() <= OVERLAP);
            assert!(pair[1].starts_with("Sentence number"));
        }
        let last = out.last().unwrap();
        assert!(last.ends_with(&sentence(99)));
    }

    #[test]
    fn a_text_without_sentence_ends_is_cut_at_spaces() {
        let text = "word ".repeat(1000);
        let out = chunks(&text);
        assert!(out.len() >= 3);
        for c in &out {
            assert!(c.chars().count() <= TARGET);
            assert!(!c.contains("wor "), "never mid-word");
        }
    }
}
