//! The rule expression language: its syntax tree, the parser (errors carry 1-based character
//! positions) and a printer used in messages.
//!
//! Grammar, loosest binding first (JavaScript's precedence):
//! ```text
//! or      := and ('||' and)*
//! and     := eq ('&&' eq)*
//! eq      := rel (('==' | '!=' | '===' | '!==') rel)*
//! rel     := unary (('<' | '<=' | '>' | '>=' | 'in') unary)*
//! unary   := ('!' | '-') unary | postfix
//! postfix := primary ('.' name | '[' or ']')*
//! primary := number | 'str' | "str" | `template ${or}` | true | false | null
//!          | auth | doc | request | now | get '(' or ')' | '(' or ')' | '[' (or (',' or)*)? ']'
//! ```
//! Nesting (parentheses, `!`, member chains, comparison chains) is bounded by [`MAX_DEPTH`], so
//! parsing and evaluation never recurse deeper than a fixed bound.

use std::fmt;

use serde_json::{Number, Value};

/// Longest expression accepted, in characters.
pub const MAX_EXPR_CHARS: usize = 1024;
/// Deepest nesting of an expression (parentheses, `!`, `.`/`[]` chains, comparison chains).
pub const MAX_DEPTH: usize = 64;
/// Most `get()` calls in one expression (CloudBase's limit).
pub const MAX_GETS: usize = 3;
/// Deepest nesting of `get()` inside the path of another `get()` (CloudBase's limit).
pub const MAX_GET_NESTING: usize = 2;

/// A variable of the rule language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Var {
    Auth,
    Doc,
    Request,
    Now,
}

/// A binary comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
}

impl CmpOp {
    fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::In => "in",
        }
    }

    /// The same comparison with its operands swapped (`a < b` is `b > a`); `None` for `in`.
    pub(super) fn flipped(self) -> Option<CmpOp> {
        Some(match self {
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::Ne => CmpOp::Ne,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::In => return None,
        })
    }
}

/// An expression. `And`/`Or` are n-ary so long chains stay shallow.
#[derive(Debug, Clone)]
pub(super) enum Expr {
    Lit(Value),
    Array(Vec<Expr>),
    Template(Vec<Part>),
    Var(Var),
    /// `obj.name` (key is a string literal) or `obj[key]`.
    Member(Box<Expr>, Box<Expr>),
    /// `get(path)`.
    Get(Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// A piece of a template string.
#[derive(Debug, Clone)]
pub(super) enum Part {
    Str(String),
    Expr(Expr),
}

impl Expr {
    /// True if `doc` occurs anywhere in the expression.
    pub(super) fn mentions_doc(&self) -> bool {
        self.any(&|e| matches!(e, Expr::Var(Var::Doc)))
    }

    /// True if `request` occurs anywhere in the expression.
    pub(super) fn mentions_request(&self) -> bool {
        self.any(&|e| matches!(e, Expr::Var(Var::Request)))
    }

    /// True if `f` holds for this node or any node below it.
    pub(super) fn any(&self, f: &dyn Fn(&Expr) -> bool) -> bool {
        if f(self) {
            return true;
        }
        match self {
            Expr::Lit(_) | Expr::Var(_) => false,
            Expr::Array(items) | Expr::And(items) | Expr::Or(items) => items.iter().any(|e| e.any(f)),
            Expr::Template(parts) => parts.iter().any(|p| matches!(p, Part::Expr(e) if e.any(f))),
            Expr::Member(a, b) | Expr::Cmp(_, a, b) => a.any(f) || b.any(f),
            Expr::Get(a) | Expr::Not(a) | Expr::Neg(a) => a.any(f),
        }
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_ident_start) && chars.all(is_ident_char)
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

fn write_str_lit(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("'")?;
    for c in s.chars() {
        match c {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("'")
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Lit(Value::String(s)) => write_str_lit(f, s),
            Expr::Lit(v) => write!(f, "{v}"),
            Expr::Array(items) => {
                f.write_str("[")?;
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{e}")?;
                }
                f.write_str("]")
            }
            Expr::Template(parts) => {
                f.write_str("`")?;
                for p in parts {
                    match p {
                        Part::Str(s) => {
                            for c in s.chars() {
                                match c {
                                    '`' | '\\' | '$' => write!(f, "\\{c}")?,
                                    c => write!(f, "{c}")?,
                                }
                            }
                        }
                        Part::Expr(e) => write!(f, "${{{e}}}")?,
                    }
                }
                f.write_str("`")
            }
            Expr::Var(v) => f.write_str(match v {
                Var::Auth => "auth",
                Var::Doc => "doc",
                Var::Request => "request",
                Var::Now => "now",
            }),
            Expr::Member(obj, key) => match &**key {
                Expr::Lit(Value::String(name)) if is_ident(name) => write!(f, "{obj}.{name}"),
                key => write!(f, "{obj}[{key}]"),
            },
            Expr::Get(path) => write!(f, "get({path})"),
            Expr::Not(e) => write!(f, "!{}", Paren(e)),
            Expr::Neg(e) => write!(f, "-{}", Paren(e)),
            Expr::Cmp(op, a, b) => write!(f, "{} {} {}", Paren(a), op.as_str(), Paren(b)),
            Expr::And(items) | Expr::Or(items) => {
                let sep = if matches!(self, Expr::And(_)) { " && " } else { " || " };
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    write!(f, "{}", Paren(e))?;
                }
                Ok(())
            }
        }
    }
}

/// Prints an operand, in parentheses unless it is atomic.
struct Paren<'a>(&'a Expr);

impl fmt::Display for Paren<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            e @ (Expr::Cmp(..) | Expr::And(_) | Expr::Or(_)) => write!(f, "({e})"),
            e => write!(f, "{e}"),
        }
    }
}

/// A syntax error: what is wrong and where (1-based character position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SyntaxError {
    pub pos: usize,
    pub message: String,
}

type Parsed<T> = Result<T, SyntaxError>;

/// Parses one rule expression. The caller checks the length limit first.
pub(super) fn parse(src: &str) -> Parsed<Expr> {
    let mut p = Parser {
        chars: src.chars().collect(),
        i: 0,
        depth: 0,
        gets: 0,
        get_nesting: 0,
    };
    let e = p.or()?;
    p.skip_ws();
    if p.i < p.chars.len() {
        return Err(p.unexpected());
    }
    Ok(e)
}

struct Parser {
    chars: Vec<char>,
    i: usize,
    depth: usize,
    gets: usize,
    get_nesting: usize,
}

impl Parser {
    fn err(&self, pos: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            pos: pos + 1,
            message: message.into(),
        }
    }

    /// "unexpected `<token>`" at the current position (after whitespace).
    fn unexpected(&mut self) -> SyntaxError {
        self.skip_ws();
        let Some(&c) = self.chars.get(self.i) else {
            return self.err(self.i, "unexpected end of expression");
        };
        let token: String = if is_ident_char(c) {
            self.chars[self.i..].iter().take_while(|c| is_ident_char(**c)).collect()
        } else {
            let ops = ["===", "!==", "==", "!=", "<=", ">=", "&&", "||", "${"];
            ops.iter()
                .find(|op| self.at(op))
                .map_or_else(|| c.to_string(), |op| op.to_string())
        };
        let hint = match token.as_str() {
            "=" => " (use `==` to compare)",
            "&" => " (use `&&`)",
            "|" => " (use `||`)",
            _ => "",
        };
        let shown = if matches!(c, '\'' | '"' | '`') {
            "string".to_string()
        } else {
            format!("`{token}`")
        };
        self.err(self.i, format!("unexpected {shown}{hint}"))
    }

    fn skip_ws(&mut self) {
        while self.chars.get(self.i).is_some_and(|c| c.is_whitespace()) {
            self.i += 1;
        }
    }

    /// True if the text at the current position starts with `s` (no whitespace skipped).
    fn at(&self, s: &str) -> bool {
        (self.i..).zip(s.chars()).all(|(k, c)| self.chars.get(k) == Some(&c))
    }

    /// Skips whitespace, then consumes `s` if it is next.
    fn eat(&mut self, s: &str) -> bool {
        self.skip_ws();
        if self.at(s) {
            self.i += s.chars().count();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &str) -> Parsed<()> {
        if self.eat(s) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    /// One more level of nesting at `pos`; fails beyond [`MAX_DEPTH`].
    fn enter(&mut self, pos: usize) -> Parsed<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(pos, format!("expression nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn or(&mut self) -> Parsed<Expr> {
        let first = self.and()?;
        let mut items = vec![first];
        while self.eat("||") {
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Parsed<Expr> {
        let first = self.equality()?;
        let mut items = vec![first];
        while self.eat("&&") {
            items.push(self.equality()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn equality(&mut self) -> Parsed<Expr> {
        let saved = self.depth;
        let mut e = self.relational()?;
        loop {
            self.skip_ws();
            let pos = self.i;
            let op = if self.eat("===") || self.eat("==") {
                CmpOp::Eq
            } else if self.eat("!==") || self.eat("!=") {
                CmpOp::Ne
            } else {
                break;
            };
            self.enter(pos)?;
            let rhs = self.relational()?;
            e = Expr::Cmp(op, Box::new(e), Box::new(rhs));
        }
        self.depth = saved;
        Ok(e)
    }

    fn relational(&mut self) -> Parsed<Expr> {
        let saved = self.depth;
        let mut e = self.unary()?;
        loop {
            self.skip_ws();
            let pos = self.i;
            let op = if self.eat("<=") {
                CmpOp::Le
            } else if self.eat(">=") {
                CmpOp::Ge
            } else if self.eat("<") {
                CmpOp::Lt
            } else if self.eat(">") {
                CmpOp::Gt
            } else if self.at("in") && !self.chars.get(self.i + 2).is_some_and(|c| is_ident_char(*c)) {
                self.i += 2;
                CmpOp::In
            } else {
                break;
            };
            self.enter(pos)?;
            let rhs = self.unary()?;
            e = Expr::Cmp(op, Box::new(e), Box::new(rhs));
        }
        self.depth = saved;
        Ok(e)
    }

    fn unary(&mut self) -> Parsed<Expr> {
        self.skip_ws();
        let pos = self.i;
        // `!` but not `!=` (which cannot start an operand anyway)
        if self.at("!") && !self.at("!=") {
            self.i += 1;
            self.enter(pos)?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        if self.at("-") {
            self.i += 1;
            self.enter(pos)?;
            let e = self.unary()?;
            self.depth -= 1;
            // fold negative number literals
            return Ok(match e {
                Expr::Lit(Value::Number(n)) => match negate(&n) {
                    Some(m) => Expr::Lit(Value::Number(m)),
                    None => Expr::Neg(Box::new(Expr::Lit(Value::Number(n)))),
                },
                e => Expr::Neg(Box::new(e)),
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Parsed<Expr> {
        let saved = self.depth;
        let mut e = self.primary()?;
        loop {
            self.skip_ws();
            let pos = self.i;
            if self.at(".") {
                self.i += 1;
                self.enter(pos)?;
                self.skip_ws();
                let start = self.i;
                while self.chars.get(self.i).is_some_and(|c| is_ident_char(*c)) {
                    self.i += 1;
                }
                let name: String = self.chars[start..self.i].iter().collect();
                if !is_ident(&name) {
                    self.i = start;
                    return Err(self.unexpected());
                }
                e = Expr::Member(Box::new(e), Box::new(Expr::Lit(Value::String(name))));
            } else if self.at("[") {
                self.i += 1;
                self.enter(pos)?;
                let key = self.or()?;
                self.expect("]")?;
                e = Expr::Member(Box::new(e), Box::new(key));
            } else if self.at("(") {
                return Err(self.err(pos, "only get() can be called"));
            } else {
                break;
            }
        }
        self.depth = saved;
        Ok(e)
    }

    fn primary(&mut self) -> Parsed<Expr> {
        self.skip_ws();
        let pos = self.i;
        let Some(&c) = self.chars.get(self.i) else {
            return Err(self.unexpected());
        };
        match c {
            '(' => {
                self.i += 1;
                self.enter(pos)?;
                let e = self.or()?;
                self.expect(")")?;
                self.depth -= 1;
                Ok(e)
            }
            '[' => {
                self.i += 1;
                self.enter(pos)?;
                let mut items = Vec::new();
                if !self.eat("]") {
                    loop {
                        items.push(self.or()?);
                        if self.eat("]") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                self.depth -= 1;
                Ok(Expr::Array(items))
            }
            '\'' | '"' => self.string(c).map(|s| Expr::Lit(Value::String(s))),
            '`' => self.template(),
            c if c.is_ascii_digit() || (c == '.' && self.chars.get(self.i + 1).is_some_and(char::is_ascii_digit)) => {
                self.number()
            }
            c if is_ident_start(c) => self.identifier(),
            _ => Err(self.unexpected()),
        }
    }

    fn identifier(&mut self) -> Parsed<Expr> {
        let pos = self.i;
        while self.chars.get(self.i).is_some_and(|c| is_ident_char(*c)) {
            self.i += 1;
        }
        let name: String = self.chars[pos..self.i].iter().collect();
        Ok(match name.as_str() {
            "true" => Expr::Lit(Value::Bool(true)),
            "false" => Expr::Lit(Value::Bool(false)),
            "null" => Expr::Lit(Value::Null),
            "auth" => Expr::Var(Var::Auth),
            "doc" => Expr::Var(Var::Doc),
            "request" => Expr::Var(Var::Request),
            "now" => Expr::Var(Var::Now),
            "get" => return self.get_call(pos),
            "in" => {
                self.i = pos;
                return Err(self.unexpected());
            }
            _ => {
                self.skip_ws();
                let what = if self.at("(") { "function" } else { "variable" };
                return Err(self.err(pos, format!("unknown {what} `{name}`")));
            }
        })
    }

    fn get_call(&mut self, pos: usize) -> Parsed<Expr> {
        if !self.eat("(") {
            return Err(self.err(pos, "`get` must be called: get('database.<collection>.<id>')"));
        }
        self.gets += 1;
        if self.gets > MAX_GETS {
            return Err(self.err(pos, format!("more than {MAX_GETS} get() calls in one expression")));
        }
        self.get_nesting += 1;
        if self.get_nesting > MAX_GET_NESTING {
            return Err(self.err(pos, format!("get() nested more than {MAX_GET_NESTING} deep")));
        }
        self.enter(pos)?;
        self.skip_ws();
        let arg_pos = self.i;
        let arg = self.or()?;
        if self.eat(",") {
            return Err(self.err(pos, "get() takes exactly one argument"));
        }
        self.expect(")")?;
        self.depth -= 1;
        self.get_nesting -= 1;
        check_get_path(&arg).map_err(|m| self.err(arg_pos, m))?;
        Ok(Expr::Get(Box::new(arg)))
    }

    fn string(&mut self, quote: char) -> Parsed<String> {
        let start = self.i;
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.chars.get(self.i).copied() {
                None | Some('\n') | Some('\r') => return Err(self.err(start, "unterminated string")),
                Some(c) if c == quote => {
                    self.i += 1;
                    return Ok(out);
                }
                Some('\\') => out.push(self.escape(start)?),
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// The character of the escape sequence at the current `\`.
    fn escape(&mut self, start: usize) -> Parsed<char> {
        let pos = self.i;
        self.i += 1;
        let Some(c) = self.chars.get(self.i).copied() else {
            return Err(self.err(start, "unterminated string"));
        };
        self.i += 1;
        Ok(match c {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'v' => '\u{b}',
            '0' => '\0',
            'x' => self.hex(2, pos)?,
            'u' => {
                if self.chars.get(self.i) == Some(&'{') {
                    self.i += 1;
                    let digits_start = self.i;
                    while self.chars.get(self.i).is_some_and(char::is_ascii_hexdigit) {
                        self.i += 1;
                    }
                    let digits: String = self.chars[digits_start..self.i].iter().collect();
                    if self.chars.get(self.i) != Some(&'}') || digits.is_empty() || digits.len() > 6 {
                        return Err(self.err(pos, "invalid \\u{…} escape"));
                    }
                    self.i += 1;
                    u32::from_str_radix(&digits, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| self.err(pos, "invalid \\u{…} escape"))?
                } else {
                    self.hex(4, pos)?
                }
            }
            other => other,
        })
    }

    fn hex(&mut self, n: usize, pos: usize) -> Parsed<char> {
        let digits: String = self.chars.iter().skip(self.i).take(n).collect();
        if digits.chars().count() != n || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(self.err(pos, "invalid escape sequence"));
        }
        self.i += n;
        u32::from_str_radix(&digits, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| {
                self.err(
                    pos,
                    "escape is not a Unicode scalar value (surrogates are not supported)",
                )
            })
    }

    fn template(&mut self) -> Parsed<Expr> {
        let start = self.i;
        self.i += 1;
        let mut parts = Vec::new();
        let mut text = String::new();
        loop {
            match self.chars.get(self.i).copied() {
                None => return Err(self.err(start, "unterminated template string")),
                Some('`') => {
                    self.i += 1;
                    break;
                }
                Some('\\') => text.push(self.escape(start)?),
                Some('$') if self.chars.get(self.i + 1) == Some(&'{') => {
                    let pos = self.i;
                    self.i += 2;
                    self.enter(pos)?;
                    if !text.is_empty() {
                        parts.push(Part::Str(std::mem::take(&mut text)));
                    }
                    let e = self.or()?;
                    self.expect("}")?;
                    self.depth -= 1;
                    parts.push(Part::Expr(e));
                }
                Some(c) => {
                    text.push(c);
                    self.i += 1;
                }
            }
        }
        if !text.is_empty() || parts.is_empty() {
            parts.push(Part::Str(text));
        }
        Ok(Expr::Template(parts))
    }

    fn number(&mut self) -> Parsed<Expr> {
        let start = self.i;
        let digits = |p: &mut Parser| {
            let s = p.i;
            while p.chars.get(p.i).is_some_and(char::is_ascii_digit) {
                p.i += 1;
            }
            p.i > s
        };
        digits(self);
        let mut integer = true;
        if self.chars.get(self.i) == Some(&'.') && self.chars.get(self.i + 1).is_some_and(char::is_ascii_digit) {
            self.i += 1;
            digits(self);
            integer = false;
        }
        if matches!(self.chars.get(self.i), Some('e' | 'E')) {
            let mark = self.i;
            self.i += 1;
            if matches!(self.chars.get(self.i), Some('+' | '-')) {
                self.i += 1;
            }
            if digits(self) {
                integer = false;
            } else {
                self.i = mark;
            }
        }
        let text: String = self.chars[start..self.i].iter().collect();
        if self.chars.get(self.i).is_some_and(|c| is_ident_char(*c)) {
            return Err(self.unexpected());
        }
        let n = if integer {
            text.parse::<i64>().ok().map(Number::from)
        } else {
            None
        }
        .or_else(|| {
            text.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(Number::from_f64)
        });
        n.map(|n| Expr::Lit(Value::Number(n)))
            .ok_or_else(|| self.err(start, format!("number `{text}` is out of range")))
    }
}

/// `-n`, exactly when possible.
pub(super) fn negate(n: &Number) -> Option<Number> {
    if let Some(i) = n.as_i64() {
        if let Some(m) = i.checked_neg() {
            return Some(Number::from(m));
        }
    }
    n.as_f64().and_then(|f| Number::from_f64(-f))
}

/// A literal `get()` path must read `database.<collection>.<id>`; a template must at least start
/// like one.
fn check_get_path(arg: &Expr) -> Result<(), String> {
    const PREFIX: &str = "database.";
    let bad = || "get() reads 'database.<collection>.<id>'".to_string();
    match arg {
        Expr::Lit(Value::String(s)) => {
            let rest = s.strip_prefix(PREFIX).ok_or_else(bad)?;
            match rest.split_once('.') {
                Some((coll, id)) if !coll.is_empty() && !id.is_empty() => Ok(()),
                _ => Err(bad()),
            }
        }
        Expr::Template(parts) => match parts.first() {
            Some(Part::Str(s)) if s.starts_with(PREFIX) || (parts.len() > 1 && PREFIX.starts_with(s.as_str())) => {
                Ok(())
            }
            Some(Part::Expr(_)) => Ok(()),
            _ => Err(bad()),
        },
        Expr::Lit(_) | Expr::Array(_) => Err(bad()),
        _ => Ok(()),
    }
}
