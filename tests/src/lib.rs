//! Shared helpers for the workspace-level integration tests.
//!
//! [`rust_source`] lets a test ask what a crate's code names (`std::fs`, `Instant::now`, the
//! `async` keyword) without being fooled by comments, doc comments or string literals. The
//! architecture test (`tests/architecture.rs`) uses it to enforce the layering rules of
//! ARCHITECTURE.md; manifests are parsed there, with the `toml` crate, which is a dev-dependency
//! and so cannot be used from this library.

pub mod rust_source {
    //! A small Rust lexer for searching code, not prose.
    //!
    //! It owns one question: on which lines does this code name that path or keyword? It
    //! deliberately does not parse Rust: it splits the text into identifiers, lifetimes, `::`
    //! and single punctuation characters, drops every comment (line, doc and nested block
    //! comments) and replaces every string, character and number literal with one placeholder
    //! token. A pattern is lexed the same way and matched as a run of consecutive tokens, so
    //! `std :: fs` split by whitespace is found while `// no std::fs here` and `"tokio"` are
    //! not, and `thread_rng` never matches inside `my_thread_rng`. A path pattern also matches
    //! through a `use` group: `std::fs` is found in `use std::{fs, io};`.
    //!
    //! What it cannot see: a name reached through an alias (`use std as s; s::fs`) or produced
    //! by a macro. The architecture rules it serves are guard rails for honest code, not a
    //! sandbox.

    /// One token of Rust source: an identifier or keyword, a lifetime (`'a`), `::`, a single
    /// punctuation character, or [`LITERAL`] for any literal.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Token {
        /// The token's text, or [`LITERAL`] for a string, character or number literal.
        pub text: String,
        /// The 1-based line the token starts on.
        pub line: usize,
    }

    /// The text of the token that stands for every literal; it matches no pattern token.
    pub const LITERAL: &str = "<literal>";

    /// A Rust source file, lexed once and searched many times.
    #[derive(Debug, Clone)]
    pub struct Source {
        text: String,
        tokens: Vec<Token>,
    }

    impl Source {
        /// Lexes `text`. Never fails: unterminated comments or literals run to the end.
        pub fn new(text: impl Into<String>) -> Self {
            let text = text.into();
            let tokens = lex(&text);
            Self { text, tokens }
        }

        /// The file's text, as given.
        pub fn text(&self) -> &str {
            &self.text
        }

        /// The code's tokens, comments dropped and literals replaced by [`LITERAL`].
        pub fn tokens(&self) -> &[Token] {
            &self.tokens
        }

        /// The 1-based line numbers where the code names `pattern`, one per occurrence, in
        /// order. `pattern` is lexed like the source, e.g. `"std::fs"`, `"Instant::now"`,
        /// `".await"`, `"async"`.
        ///
        /// # Panics
        ///
        /// If `pattern` contains no token.
        pub fn find(&self, pattern: &str) -> Vec<usize> {
            let pattern: Vec<String> = lex(pattern).into_iter().map(|t| t.text).collect();
            assert!(!pattern.is_empty(), "rust_source::find: empty pattern");
            (0..self.tokens.len())
                .filter(|&start| matches_at(&self.tokens, start, &pattern))
                .map(|start| self.tokens[start].line)
                .collect()
        }

        /// The text of 1-based line `number`, or `""` past the end.
        pub fn line(&self, number: usize) -> &str {
            self.text
                .lines()
                .nth(number.saturating_sub(1))
                .unwrap_or("")
        }
    }

    /// Whether `pattern` matches the tokens starting at `at`. At a `::` followed by a `{` group
    /// in the source, the rest of the pattern may continue from any top-level item of the
    /// group: `std :: { io , fs :: File }` matches `std::fs` and `std::fs::File`.
    fn matches_at(tokens: &[Token], at: usize, pattern: &[String]) -> bool {
        let Some((first, rest)) = pattern.split_first() else {
            return true;
        };
        let Some(token) = tokens.get(at) else {
            return false;
        };
        if token.text != *first {
            return false;
        }
        if first == "::" && tokens.get(at + 1).is_some_and(|t| t.text == "{") {
            return group_items(tokens, at + 1).any(|item| matches_at(tokens, item, rest));
        }
        matches_at(tokens, at + 1, rest)
    }

    /// The index of the first token of each top-level item in the `{ … }` group that opens at
    /// `open`.
    fn group_items(tokens: &[Token], open: usize) -> impl Iterator<Item = usize> + '_ {
        let mut depth = 0usize;
        let mut items = Vec::new();
        for (index, token) in tokens.iter().enumerate().skip(open) {
            match token.text.as_str() {
                "{" => {
                    depth += 1;
                    if depth == 1 {
                        items.push(index + 1);
                    }
                }
                "}" => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                "," if depth == 1 => items.push(index + 1),
                _ => {}
            }
        }
        items.into_iter()
    }

    fn is_ident_start(c: char) -> bool {
        c == '_' || c.is_alphabetic()
    }

    fn is_ident_continue(c: char) -> bool {
        c == '_' || c.is_alphanumeric()
    }

    /// Splits `text` into [`Token`]s, dropping comments and collapsing literals.
    fn lex(text: &str) -> Vec<Token> {
        let chars: Vec<char> = text.chars().collect();
        let mut lexer = Lexer {
            chars: &chars,
            at: 0,
            line: 1,
            tokens: Vec::new(),
        };
        lexer.run();
        lexer.tokens
    }

    struct Lexer<'a> {
        chars: &'a [char],
        at: usize,
        line: usize,
        tokens: Vec<Token>,
    }

    impl Lexer<'_> {
        fn peek(&self, ahead: usize) -> Option<char> {
            self.chars.get(self.at + ahead).copied()
        }

        /// Moves past one character, counting lines.
        fn bump(&mut self) {
            if self.peek(0) == Some('\n') {
                self.line += 1;
            }
            self.at += 1;
        }

        fn push(&mut self, text: impl Into<String>, line: usize) {
            self.tokens.push(Token {
                text: text.into(),
                line,
            });
        }

        fn run(&mut self) {
            while let Some(c) = self.peek(0) {
                let line = self.line;
                match (c, self.peek(1)) {
                    (c, _) if c.is_whitespace() => self.bump(),
                    ('/', Some('/')) => {
                        while self.peek(0).is_some_and(|c| c != '\n') {
                            self.bump();
                        }
                    }
                    ('/', Some('*')) => self.block_comment(),
                    ('"', _) => {
                        self.push(LITERAL, line);
                        self.bump();
                        self.string(None);
                    }
                    ('\'', _) => self.quote(),
                    (':', Some(':')) => {
                        self.push("::", line);
                        self.at += 2;
                    }
                    (c, _) if c.is_ascii_digit() => {
                        while self.peek(0).is_some_and(is_ident_continue) {
                            self.bump();
                        }
                        self.push(LITERAL, line);
                    }
                    (c, _) if is_ident_start(c) => self.word(),
                    (c, _) => {
                        self.push(c, line);
                        self.bump();
                    }
                }
            }
        }

        /// A `/* … */` comment, which may nest.
        fn block_comment(&mut self) {
            let mut depth = 0usize;
            while let Some(c) = self.peek(0) {
                match (c, self.peek(1)) {
                    ('/', Some('*')) => {
                        depth += 1;
                        self.at += 2;
                    }
                    ('*', Some('/')) => {
                        depth -= 1;
                        self.at += 2;
                        if depth == 0 {
                            return;
                        }
                    }
                    _ => self.bump(),
                }
            }
        }

        /// The body of a string literal, after its opening `"`. `raw_hashes` is `Some(n)` for
        /// a raw string closed by `"` and `n` `#`s; otherwise `\` escapes the next character.
        fn string(&mut self, raw_hashes: Option<usize>) {
            while let Some(c) = self.peek(0) {
                match (c, raw_hashes) {
                    ('\\', None) => {
                        self.bump();
                        self.bump();
                    }
                    ('"', None) => {
                        self.bump();
                        return;
                    }
                    ('"', Some(hashes))
                        if (1..=hashes).all(|ahead| self.peek(ahead) == Some('#')) =>
                    {
                        self.at += 1 + hashes;
                        return;
                    }
                    _ => self.bump(),
                }
            }
        }

        /// At a `'`: a character literal (`'x'`, `'\n'`, `'\''`) or a lifetime or label (`'a`).
        fn quote(&mut self) {
            let line = self.line;
            if self.peek(1) == Some('\\') {
                // Skip the quote, the backslash and the escaped character, then run to the
                // closing quote (`'\u{1F600}'` has more inside).
                self.at += 3;
                while self.peek(0).is_some_and(|c| c != '\'' && c != '\n') {
                    self.bump();
                }
                self.at += 1;
                self.push(LITERAL, line);
            } else if self.peek(2) == Some('\'') {
                self.at += 3;
                self.push(LITERAL, line);
            } else {
                let start = self.at;
                self.at += 1;
                while self.peek(0).is_some_and(is_ident_continue) {
                    self.at += 1;
                }
                let lifetime: String = self.chars[start..self.at].iter().collect();
                self.push(lifetime, line);
            }
        }

        /// An identifier or keyword, or the prefix of a literal (`b"…"`, `b'x'`, `r#"…"#`,
        /// `c"…"`) or of a raw identifier (`r#async`, kept as `r#async` so it is not the
        /// keyword).
        fn word(&mut self) {
            let line = self.line;
            let start = self.at;
            while self.peek(0).is_some_and(is_ident_continue) {
                self.at += 1;
            }
            let word: String = self.chars[start..self.at].iter().collect();
            let hashes = (0..)
                .take_while(|&ahead| self.peek(ahead) == Some('#'))
                .count();
            match (word.as_str(), self.peek(0)) {
                ("b" | "c", Some('"')) => {
                    self.push(LITERAL, line);
                    self.at += 1;
                    self.string(None);
                }
                ("b", Some('\'')) => self.quote(),
                ("r" | "br" | "cr", Some('"' | '#')) if self.peek(hashes) == Some('"') => {
                    self.push(LITERAL, line);
                    self.at += hashes + 1;
                    self.string(Some(hashes));
                }
                ("r", Some('#')) if hashes == 1 && self.peek(1).is_some_and(is_ident_start) => {
                    self.at += 1;
                    let name_start = self.at;
                    while self.peek(0).is_some_and(is_ident_continue) {
                        self.at += 1;
                    }
                    let name: String = self.chars[name_start..self.at].iter().collect();
                    self.push(format!("r#{name}"), line);
                }
                _ => self.push(word, line),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::{LITERAL, Source};

        fn texts(source: &str) -> Vec<String> {
            Source::new(source)
                .tokens()
                .iter()
                .map(|t| t.text.clone())
                .collect()
        }

        #[test]
        fn comments_and_literals_disappear() {
            let source = Source::new(concat!(
                "//! std::fs in a module doc\n",
                "/// std::net in an item doc\n",
                "/* std::process /* nested std::thread */ still comment */\n",
                "let a = \"std::env \\\" tokio\";\n",
                "let b = r##\"SystemTime \"# OsRng\"##;\n",
                "let c = b\"thread_rng\"; let d = c\"getrandom\";\n",
                "let e = '\\''; let f = 'x'; let g = b'\\n';\n",
                "#[doc = \"Instant::now\"]\n",
            ));
            for pattern in [
                "std::fs",
                "std::net",
                "std::process",
                "std::thread",
                "std::env",
                "tokio",
                "SystemTime",
                "OsRng",
                "thread_rng",
                "getrandom",
                "Instant::now",
            ] {
                assert_eq!(source.find(pattern), Vec::<usize>::new(), "{pattern}");
            }
            assert_eq!(source.find("let"), vec![4, 5, 6, 6, 7, 7, 7]);
        }

        #[test]
        fn lifetimes_are_not_char_literals() {
            assert_eq!(
                texts("fn f<'a>(x: &'a str) -> char { 'z' }"),
                [
                    "fn", "f", "<", "'a", ">", "(", "x", ":", "&", "'a", "str", ")", "-", ">",
                    "char", "{", LITERAL, "}"
                ]
            );
        }

        #[test]
        fn raw_identifiers_are_not_keywords() {
            let source = Source::new("let r#async = 1;\nasync fn f() {}");
            assert_eq!(source.find("async"), vec![2]);
            assert_eq!(source.find("r#async"), vec![1]);
        }

        #[test]
        fn paths_match_across_whitespace_and_use_groups() {
            let source = Source::new(concat!(
                "use std :: fs;\n",
                "use std::{io, fs::File};\n",
                "use std::{collections::{BTreeMap, HashMap}, fs};\n",
                "use std::{io::{self, fs}};\n",
                "fn f() { let _ = Instant::now(); x.await; }\n",
            ));
            assert_eq!(source.find("std::fs"), vec![1, 2, 3]);
            assert_eq!(source.find("std::fs::File"), vec![2]);
            assert_eq!(source.find("std::collections::HashMap"), vec![3]);
            assert_eq!(source.find("Instant::now"), vec![5]);
            assert_eq!(source.find(".await"), vec![5]);
        }

        #[test]
        fn identifiers_match_whole() {
            let source = Source::new("fn my_thread_rng() {} fn thread_rng_like() {} FxHashMap");
            assert_eq!(source.find("thread_rng"), Vec::<usize>::new());
            assert_eq!(source.find("HashMap"), Vec::<usize>::new());
        }
    }
}
