//! Splits a command text into its top-level bash commands (separated by newlines outside quotes,
//! substitutions, compound commands and heredocs), to refuse several commands in one call
//! (agent-behaviour §4.1 step 5). A small scanner, not a full bash parser: it errs on the side of
//! "one command" when unsure.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Frame {
    Paren,
    Brace,
    If,
    Do,
    Case,
    DoubleQuote,
    Backtick,
}

struct Scanner<'a> {
    s: &'a [char],
    i: usize,
    frames: Vec<Frame>,
    /// The next word starts a command (keywords only count there).
    cmd_pos: bool,
    /// The line ended with an operator that continues on the next line (`&&`, `||`, `|`).
    continues: bool,
    heredocs: Vec<(String, bool)>,
    word: String,
}

impl Scanner<'_> {
    fn peek(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }

    fn end_word(&mut self) {
        if self.word.is_empty() {
            return;
        }
        let w = std::mem::take(&mut self.word);
        if !self.cmd_pos {
            return;
        }
        let top = self.frames.last().copied();
        match w.as_str() {
            "if" => self.frames.push(Frame::If),
            "then" | "else" | "elif" | "!" | "time" => {}
            "do" => self.frames.push(Frame::Do),
            "fi" if top == Some(Frame::If) => {
                self.frames.pop();
                self.cmd_pos = false;
            }
            "done" if top == Some(Frame::Do) => {
                self.frames.pop();
                self.cmd_pos = false;
            }
            "esac" if top == Some(Frame::Case) => {
                self.frames.pop();
                self.cmd_pos = false;
            }
            "case" => {
                self.frames.push(Frame::Case);
                self.cmd_pos = false;
            }
            "{" => self.frames.push(Frame::Brace),
            "}" if top == Some(Frame::Brace) => {
                self.frames.pop();
                self.cmd_pos = false;
            }
            _ => self.cmd_pos = w.contains('=') && !w.starts_with('='),
        }
    }

    /// Reads a heredoc delimiter after `<<` / `<<-`.
    fn heredoc(&mut self) {
        let strip_tabs = self.peek(0) == Some('-');
        if strip_tabs {
            self.i += 1;
        }
        while matches!(self.peek(0), Some(' ' | '\t')) {
            self.i += 1;
        }
        let mut delim = String::new();
        while let Some(c) = self.peek(0) {
            match c {
                '\'' | '"' => {
                    self.i += 1;
                    while let Some(d) = self.peek(0) {
                        self.i += 1;
                        if d == c {
                            break;
                        }
                        delim.push(d);
                    }
                }
                '\\' => {
                    self.i += 1;
                    if let Some(d) = self.peek(0) {
                        delim.push(d);
                        self.i += 1;
                    }
                }
                c if c.is_whitespace() || matches!(c, ';' | '&' | '|' | '<' | '>' | '(' | ')') => {
                    break;
                }
                c => {
                    delim.push(c);
                    self.i += 1;
                }
            }
        }
        if !delim.is_empty() {
            self.heredocs.push((delim, strip_tabs));
        }
    }

    /// After a newline: skips the bodies of pending heredocs.
    fn skip_heredoc_bodies(&mut self) {
        for (delim, strip_tabs) in std::mem::take(&mut self.heredocs) {
            loop {
                if self.i >= self.s.len() {
                    return;
                }
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i] != '\n' {
                    self.i += 1;
                }
                let line: String = self.s[start..self.i].iter().collect();
                if self.i < self.s.len() {
                    self.i += 1;
                }
                let line = if strip_tabs {
                    line.trim_start_matches('\t').to_string()
                } else {
                    line
                };
                if line == delim {
                    break;
                }
            }
        }
    }
}

/// The top-level commands of `text`, trimmed, comment-only and blank ones dropped.
pub fn split_commands(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut sc = Scanner {
        s: &chars,
        i: 0,
        frames: Vec::new(),
        cmd_pos: true,
        continues: false,
        heredocs: Vec::new(),
        word: String::new(),
    };
    let mut out = Vec::new();
    let mut seg_start = 0usize;
    let mut seg_has_code = false;
    while sc.i < chars.len() {
        let c = chars[sc.i];
        match sc.frames.last() {
            Some(Frame::DoubleQuote) => {
                match c {
                    '\\' => sc.i += 1,
                    '"' => {
                        sc.frames.pop();
                    }
                    '$' if sc.peek(1) == Some('(') => {
                        sc.frames.push(Frame::Paren);
                        sc.cmd_pos = true;
                        sc.i += 1;
                    }
                    '`' => sc.frames.push(Frame::Backtick),
                    _ => {}
                }
                sc.i += 1;
                continue;
            }
            Some(Frame::Backtick) => {
                match c {
                    '\\' => sc.i += 1,
                    '`' => {
                        sc.frames.pop();
                    }
                    _ => {}
                }
                sc.i += 1;
                continue;
            }
            _ => {}
        }
        match c {
            '\\' if sc.peek(1) == Some('\n') => sc.i += 2,
            '\\' => {
                sc.word.push(c);
                if let Some(n) = sc.peek(1) {
                    sc.word.push(n);
                }
                seg_has_code = true;
                sc.continues = false;
                sc.i += 2;
            }
            '\'' => {
                sc.word.push('\'');
                sc.i += 1;
                while sc.i < chars.len() && chars[sc.i] != '\'' {
                    sc.i += 1;
                }
                sc.i += 1;
                seg_has_code = true;
                sc.continues = false;
            }
            '"' => {
                sc.word.push('"');
                sc.frames.push(Frame::DoubleQuote);
                seg_has_code = true;
                sc.continues = false;
                sc.i += 1;
            }
            '`' => {
                sc.word.push('`');
                sc.frames.push(Frame::Backtick);
                seg_has_code = true;
                sc.continues = false;
                sc.i += 1;
            }
            '#' if sc.word.is_empty() => {
                while sc.i < chars.len() && chars[sc.i] != '\n' {
                    sc.i += 1;
                }
            }
            '$' if sc.peek(1) == Some('(') => {
                sc.word.push('$');
                sc.frames.push(Frame::Paren);
                sc.cmd_pos = true;
                seg_has_code = true;
                sc.continues = false;
                sc.i += 2;
            }
            '$' if sc.peek(1) == Some('{') => {
                let mut depth = 0usize;
                while sc.i < chars.len() {
                    match chars[sc.i] {
                        '{' => depth += 1,
                        '}' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                sc.i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    sc.i += 1;
                }
                sc.word.push('$');
                seg_has_code = true;
                sc.continues = false;
            }
            '(' => {
                sc.end_word();
                sc.frames.push(Frame::Paren);
                sc.cmd_pos = true;
                seg_has_code = true;
                sc.continues = false;
                sc.i += 1;
            }
            ')' => {
                sc.end_word();
                // After `f()` or `(…)` a compound command may follow (`f() {`).
                if sc.frames.last() == Some(&Frame::Paren) {
                    sc.frames.pop();
                }
                sc.cmd_pos = true;
                sc.i += 1;
            }
            '<' if sc.peek(1) == Some('<') && sc.peek(2) != Some('<') => {
                sc.end_word();
                sc.i += 2;
                sc.heredoc();
                seg_has_code = true;
                sc.continues = false;
            }
            ';' | '&' | '|' => {
                sc.end_word();
                let next = sc.peek(1);
                let two = matches!(
                    (c, next),
                    ('&', Some('&')) | ('|', Some('|')) | (';', Some(';')) | ('|', Some('&'))
                );
                sc.continues = c == '|' || (c == '&' && next == Some('&'));
                sc.cmd_pos = true;
                sc.i += if two { 2 } else { 1 };
                if c == '&' && next == Some('>') {
                    sc.continues = false;
                    sc.cmd_pos = false;
                }
            }
            '\n' => {
                sc.end_word();
                sc.i += 1;
                sc.skip_heredoc_bodies();
                if sc.frames.is_empty() && !sc.continues {
                    let seg: String = chars[seg_start..sc.i].iter().collect();
                    if seg_has_code && !seg.trim().is_empty() {
                        out.push(seg.trim().to_string());
                    }
                    seg_start = sc.i;
                    seg_has_code = false;
                }
                sc.cmd_pos = true;
            }
            c if c.is_whitespace() => {
                sc.end_word();
                sc.i += 1;
            }
            c => {
                sc.word.push(c);
                seg_has_code = true;
                sc.continues = false;
                sc.i += 1;
            }
        }
    }
    let seg: String = chars[seg_start.min(chars.len())..].iter().collect();
    if seg_has_code && !seg.trim().is_empty() {
        out.push(seg.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_lines_but_not_compound_commands() {
        assert_eq!(split_commands("echo a\necho b"), vec!["echo a", "echo b"]);
        assert_eq!(split_commands("echo a && echo b; false").len(), 1);
        assert_eq!(split_commands("cat <<'EOF'\nheredoc line\nEOF").len(), 1);
        assert_eq!(
            split_commands("cat <<-EOF > f\n\tx\n\tEOF\necho after"),
            vec!["cat <<-EOF > f\n\tx\n\tEOF", "echo after"]
        );
        assert_eq!(split_commands("for i in 1 2; do\n  echo $i\ndone").len(), 1);
        assert_eq!(
            split_commands("if true; then\n echo x\nelse\n echo y\nfi").len(),
            1
        );
        assert_eq!(split_commands("echo a &&\necho b").len(), 1);
        assert_eq!(split_commands("echo a |\n grep a").len(), 1);
        assert_eq!(split_commands("echo 'a\nb'").len(), 1);
        assert_eq!(split_commands("echo \"$(echo\nhi)\"").len(), 1);
        assert_eq!(
            split_commands("case x in\n a) echo a;;\n *) echo b;;\nesac").len(),
            1
        );
        assert_eq!(split_commands("f() {\n echo\n}").len(), 1);
        assert_eq!(split_commands("echo a \\\n b").len(), 1);
        assert_eq!(
            split_commands("python3 -c \"import sys\nprint(1)\"").len(),
            1
        );
        assert_eq!(split_commands("# note\necho a"), vec!["echo a"]);
        assert_eq!(split_commands("echo a # c\necho b").len(), 2);
        assert_eq!(split_commands("\n\necho a\n\n").len(), 1);
        assert_eq!(split_commands("sleep 1 &\necho b").len(), 2);
        assert_eq!(split_commands("echo $((1+2))\necho ${A:-x}").len(), 2);
        assert_eq!(
            split_commands("while read l; do echo $l; done < f\necho z").len(),
            2
        );
        assert_eq!(split_commands("").len(), 0);
    }
}
