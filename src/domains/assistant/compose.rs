//! Picking the sentences of a passage that answer a question: the built-in provider's answer
//! and the search's snippets. Every snippet is a contiguous slice of the passage it quotes.

use super::{chunk, terms};

/// The longest snippet that spans several sentences; a longer span quotes the best one only.
const LONGEST_SPAN: usize = 400;

/// The rough stems of a question's searchable words.
pub fn stems(question: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in terms::terms(question) {
        let s = terms::stem(&t);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// How many of `stems` the sentence has.
fn score(sentence: &str, stems: &[String]) -> usize {
    let words: Vec<String> = sentence
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(terms::stem)
        .collect();
    stems.iter().filter(|s| words.contains(s)).count()
}

/// The sentences of a passage that are prose (headings left out, unless it has nothing else),
/// as slices of it.
fn sentences(content: &str) -> Vec<&str> {
    let of = |prose: bool| -> Vec<&str> {
        content
            .lines()
            .filter(|l| !prose || !l.trim_start().starts_with('#'))
            .flat_map(chunk::sentences)
            .filter(|s| s.chars().any(char::is_alphanumeric))
            .collect()
    };
    let prose = of(true);
    if prose.is_empty() {
        of(false)
    } else {
        prose
    }
}

/// The best sentences of `content` for `stems`, at most `n`, in the passage's order: those that
/// have the most of the words; when none has any, the first ones. Also the best score.
pub fn pick<'a>(content: &'a str, stems: &[String], n: usize) -> (Vec<&'a str>, usize) {
    let all = sentences(content);
    let mut scored: Vec<(usize, usize)> = all
        .iter()
        .enumerate()
        .map(|(i, s)| (score(s, stems), i))
        .filter(|(score, _)| *score > 0)
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let best = scored.first().map_or(0, |s| s.0);
    let mut chosen: Vec<usize> = scored.iter().take(n).map(|(_, i)| *i).collect();
    if chosen.is_empty() {
        chosen = (0..all.len().min(n)).collect();
    }
    chosen.sort_unstable();
    (chosen.into_iter().map(|i| all[i]).collect(), best)
}

/// The best sentences of `content` for `stems` (see [`pick`]).
pub fn best_sentences<'a>(content: &'a str, stems: &[String], n: usize) -> Vec<&'a str> {
    pick(content, stems, n).0
}

/// The slice of `content` from the first to the last of `chosen` (slices of it) when that is
/// short enough, else the first of them: text that is really in the passage.
pub fn span<'a>(content: &'a str, chosen: &[&'a str]) -> &'a str {
    let offset = |s: &str| (s.as_ptr() as usize).saturating_sub(content.as_ptr() as usize);
    let (Some(first), Some(last)) = (chosen.first(), chosen.last()) else {
        return "";
    };
    let start = offset(first);
    let end = offset(last) + last.len();
    match content.get(start..end) {
        Some(s) if s.chars().count() <= LONGEST_SPAN => s,
        _ => first,
    }
}

/// A snippet of `content` for a search of `question`.
pub fn snippet<'a>(content: &'a str, question: &str) -> &'a str {
    let chosen = best_sentences(content, &stems(question), 2);
    span(content, &chosen)
}

/// A sentence as prose: list markers and markdown emphasis dropped.
pub fn plain(sentence: &str) -> String {
    let s = sentence.trim_start();
    let s = s
        .strip_prefix("- ")
        .or_else(|| s.strip_prefix("* "))
        .unwrap_or(s);
    let s = match s.split_once(". ") {
        Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => s,
    };
    s.replace("**", "").replace('`', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLANS: &str = "# Plans and prices\n\nFree costs R0. It includes 50 messages.\n\n\
                         Pro costs R529 per month, or R4,990 per year. It includes 2,000 messages.";

    #[test]
    fn the_sentences_with_the_questions_words_are_picked_and_quoted_as_they_stand() {
        let stems = stems("How much is Pro?");
        let chosen = best_sentences(PLANS, &stems, 2);
        assert_eq!(chosen, ["Pro costs R529 per month, or R4,990 per year."]);
        assert!(PLANS.contains(span(PLANS, &chosen)));
    }

    #[test]
    fn a_span_of_two_sentences_is_a_slice_of_the_passage() {
        let s = snippet(PLANS, "free messages");
        assert_eq!(s, "Free costs R0. It includes 50 messages.");
        assert_eq!(plain("- **Small** pack: `R100`"), "Small pack: R100");
        assert_eq!(plain("2. Confirm it."), "Confirm it.");
    }

    #[test]
    fn a_passage_of_headings_only_is_quoted_from_its_headings() {
        assert_eq!(snippet("# Loadshedding\n## Stages", "stages"), "## Stages");
    }
}
