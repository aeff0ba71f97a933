//! The words of a question that are worth searching for, and the full-text query each database
//! is given for them. A query is built only from letters and digits, each term quoted, so no
//! client text ever reaches FTS5's or PostgreSQL's query syntax (`"`, `*`, `NEAR(`, `AND OR`
//! are words or nothing, never operators).

/// Words too common to say what a question is about.
const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "been",
    "but",
    "by",
    "can",
    "could",
    "do",
    "does",
    "did",
    "for",
    "from",
    "get",
    "got",
    "had",
    "has",
    "have",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "me",
    "much",
    "my",
    "of",
    "on",
    "or",
    "our",
    "please",
    "should",
    "so",
    "tell",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "this",
    "to",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "who",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "many",
    "some",
    "there",
    "than",
    "not",
    "no",
    "also",
    "just",
    "more",
    "most",
    "need",
    "want",
    "know",
    "use",
    "using",
    "via",
    "cape",
    "capecontrol",
];

/// The most terms a query is built from.
const MAX_TERMS: usize = 24;

/// The distinct searchable words of `text`, lower-cased, in order of appearance.
pub fn terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        let word = word.to_lowercase();
        if word.is_empty() || STOP_WORDS.contains(&word.as_str()) || out.contains(&word) {
            continue;
        }
        // A lone letter or a very long run says nothing a search can use.
        if word.chars().count() < 2 || word.chars().count() > 40 {
            continue;
        }
        out.push(word);
        if out.len() == MAX_TERMS {
            break;
        }
    }
    out
}

/// An FTS5 `MATCH` expression: any of the terms, each a quoted string.
pub fn fts5_query(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// A PostgreSQL `to_tsquery` text: any of the terms, each a quoted lexeme.
pub fn tsquery(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A rough stem, for matching a question's words to a passage's sentences in Rust: `prices`,
/// `priced` and `pricing` all read `pric`.
pub fn stem(word: &str) -> String {
    let w = word.to_lowercase();
    for suffix in ["ing", "ies", "es", "ed", "s", "e", "y"] {
        if let Some(base) = w.strip_suffix(suffix) {
            if base.chars().count() >= 3 {
                return base.to_owned();
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_and_punctuation_never_reach_the_query() {
        assert!(terms("\" * NEAR( ' \\ 🙂 ()").iter().all(|t| t == "near"));
        assert_eq!(terms("AND OR NOT"), Vec::<String>::new());
        assert_eq!(fts5_query(&terms("How much is Pro?")), "\"pro\"");
        assert_eq!(
            tsquery(&terms("refunds, invoices")),
            "'refunds' | 'invoices'"
        );
    }

    #[test]
    fn stems_of_one_word_agree() {
        assert_eq!(stem("prices"), stem("price"));
        assert_eq!(stem("pricing"), stem("priced"));
        assert_eq!(stem("Payments"), stem("payment"));
    }
}
