//! National identity and tax numbers of the schemes that carry a check digit. A number counts
//! only when its check digit is right; schemes whose numbers are bare digit strings of a common
//! length (NHS, BSN, SIN, Steuer-ID, PESEL, Aadhaar, personnummer) also need one of their
//! words shortly before the number (`NHS no.`, `"bsn":`, `Steuer-ID`…), since one random number
//! in ten or eleven passes their checks. Spanish DNI/NIE, French NIR, Italian codice fiscale and
//! Belgian register numbers in their dotted form are distinctive enough alone.

use super::detect::{Finding, Kind};
use super::gate;
use regex::Regex;
use std::sync::OnceLock;

#[derive(Clone, Copy)]
enum Shape {
    /// 9 digits: BSN (11-proof) or SIN (Luhn).
    Nine,
    /// 10 digits: NHS.
    Ten,
    /// 11 digits: Steuer-ID, PESEL, Belgian register number.
    Eleven,
    /// 12 digits: Aadhaar.
    Twelve,
    Dni,
    Nir,
    CodiceFiscale,
    Personnummer,
    BelgianDotted,
}

impl Shape {
    /// The gate group (`gate.rs`) whose words the scheme needs, if it needs any.
    fn gate(self) -> Option<u32> {
        match self {
            Shape::Nine => Some(gate::ID_NINE),
            Shape::Ten => Some(gate::ID_TEN),
            Shape::Eleven => Some(gate::ID_ELEVEN),
            Shape::Twelve => Some(gate::ID_TWELVE),
            Shape::Personnummer => Some(gate::ID_PERSONNUMMER),
            Shape::Dni | Shape::Nir | Shape::CodiceFiscale | Shape::BelgianDotted => None,
        }
    }
}

fn patterns() -> &'static [(Shape, Regex)] {
    static P: OnceLock<Vec<(Shape, Regex)>> = OnceLock::new();
    P.get_or_init(|| {
        [
            (Shape::Nine, r"(?-u:\b)\d{3}[ .-]?\d{3}[ .-]?\d{3}(?-u:\b)|(?-u:\b)\d{4}\.\d{2}\.\d{3}(?-u:\b)"),
            (Shape::Ten, r"(?-u:\b)\d{3}[ -]?\d{3}[ -]?\d{4}(?-u:\b)"),
            (Shape::Eleven, r"(?-u:\b)\d{11}(?-u:\b)|(?-u:\b)\d{2} \d{3} \d{3} \d{3}(?-u:\b)"),
            (Shape::Twelve, r"(?-u:\b)[2-9]\d{3}[ -]?\d{4}[ -]?\d{4}(?-u:\b)"),
            (Shape::Dni, r"(?-u:\b)(?:\d{8}|[XYZ]-?\d{7})-?[A-Z](?-u:\b)"),
            (
                Shape::Nir,
                r"(?-u:\b)[12] ?\d{2} ?(?:0[1-9]|1[0-2]) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?-u:\b)",
            ),
            (
                Shape::CodiceFiscale,
                r"(?-u:\b)[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z](?-u:\b)",
            ),
            (Shape::Personnummer, r"(?-u:\b)(?:\d{2})?\d{6}[-+]\d{4}(?-u:\b)"),
            (Shape::BelgianDotted, r"(?-u:\b)\d{2}\.\d{2}\.\d{2}-\d{3}\.\d{2}(?-u:\b)"),
        ]
        .into_iter()
        .filter_map(|(s, re)| Regex::new(re).ok().map(|r| (s, r)))
        .collect()
    })
}

/// The number of built-in patterns (a unit test checks they all compile).
#[cfg(test)]
pub(super) const PATTERNS: usize = 9;

/// Every national id in `text` (not yet resolved against other kinds).
/// `lower`: `text` in ASCII lower case; `gates`: `gate::open(text)`.
pub(super) fn find(text: &str, lower: &str, gates: u32, out: &mut Vec<Finding>) {
    for (shape, re) in patterns() {
        // A scheme that needs its word runs only where one of its words occurs at all.
        if shape.gate().is_some_and(|g| gates & g == 0) {
            continue;
        }
        for m in re.find_iter(text) {
            let v = m.as_str();
            // Field names spell words with underscores: `national_number`, `steuer_id`.
            let context = window(lower, m.start()).replace('_', " ");
            let context = context.as_str();
            let ok = match shape {
                Shape::Nine => {
                    let d = digits(v);
                    (has_word(
                        context,
                        &["bsn", "burgerservicenummer", "sofinummer", "sofi"],
                    ) && bsn(&d))
                        || (has_word(context, &["sin", "social insurance", "nas"]) && sin(&d))
                }
                Shape::Ten => {
                    has_word(context, &["nhs", "nhs number", "nhs no"]) && nhs(&digits(v))
                }
                Shape::Eleven => {
                    let d = digits(v);
                    (has_word(
                        context,
                        &[
                            "steuer-id",
                            "steuer id",
                            "steuerid",
                            "steuer-idnr",
                            "idnr",
                            "steueridentifikationsnummer",
                            "identifikationsnummer",
                            "steuerliche",
                            "tax id",
                            "tin",
                        ],
                    ) && steuer_id(&d))
                        || (has_word(context, &["pesel"]) && pesel(&d))
                        || (has_word(
                            context,
                            &[
                                "rijksregisternummer",
                                "rijksregister",
                                "national number",
                                "national register",
                                "numéro national",
                                "registre national",
                                "nn",
                                "insz",
                                "niss",
                            ],
                        ) && belgian(&d))
                }
                Shape::Twelve => {
                    has_word(context, &["aadhaar", "aadhar", "uidai", "uid"])
                        && verhoeff(&digits(v))
                }
                Shape::Dni => dni(v),
                Shape::Nir => nir(v),
                Shape::CodiceFiscale => codice_fiscale(v),
                Shape::Personnummer => {
                    has_word(
                        context,
                        &[
                            "personnummer",
                            "personnr",
                            "person number",
                            "personal identity number",
                            "pnr",
                            "samordningsnummer",
                        ],
                    ) && personnummer(v)
                }
                Shape::BelgianDotted => belgian(&digits(v)),
            };
            if ok && standalone(text, m.start(), m.end()) {
                out.push(Finding {
                    kind: Kind::NationalId,
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
    }
}

/// The 64 bytes before `at`, cut at a blank line (another paragraph or field).
fn window(lower: &str, at: usize) -> &str {
    let mut from = at.saturating_sub(64);
    while !lower.is_char_boundary(from) {
        from += 1;
    }
    let w = &lower[from..at];
    match w.rfind("\n\n") {
        Some(i) => &w[i + 2..],
        None => w,
    }
}

/// Whether one of `words` occurs in `hay` as a word (not inside a longer word: `sin` is not
/// in `using`; `_` and punctuation end a word, so `nhs_number` holds `nhs`).
pub(super) fn has_word(hay: &str, words: &[&str]) -> bool {
    let b = hay.as_bytes();
    words.iter().any(|w| {
        hay.match_indices(w).any(|(i, _)| {
            let before = i.checked_sub(1).map(|j| b[j]);
            let after = b.get(i + w.len()).copied();
            !before.is_some_and(|c| c.is_ascii_alphanumeric())
                && !after.is_some_and(|c| c.is_ascii_alphanumeric())
        })
    })
}

/// Not part of a longer run of digits or glued to letters.
fn standalone(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let prev = start.checked_sub(1).map(|i| b[i]);
    let prev2 = start.checked_sub(2).map(|i| b[i]);
    let next = b.get(end).copied();
    let next2 = b.get(end + 1).copied();
    let glued = |c: Option<u8>, sep: Option<u8>| match (c, sep) {
        (Some(c), _) if c.is_ascii_alphanumeric() => true,
        (Some(b' ' | b'-' | b'.' | b'/'), Some(d)) => d.is_ascii_digit(),
        _ => false,
    };
    !glued(prev, prev2) && !glued(next, next2)
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

fn number(d: &[u8]) -> u64 {
    d.iter().fold(0u64, |a, &x| a * 10 + u64::from(x))
}

/// UK NHS number: mod 11 with weights 10 to 2; a remainder giving 10 is never issued.
fn nhs(d: &[u8]) -> bool {
    if d.len() != 10 {
        return false;
    }
    let sum: u32 = d[..9]
        .iter()
        .zip((2..=10).rev())
        .map(|(&x, w)| u32::from(x) * w)
        .sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return false,
        c => c,
    };
    check == u32::from(d[9]) && !d.iter().all(|&x| x == d[0])
}

/// Dutch BSN: the 11-proof (weights 9 to 2, and -1 for the last digit).
fn bsn(d: &[u8]) -> bool {
    if d.len() != 9 || d.iter().all(|&x| x == 0) {
        return false;
    }
    let sum: i32 = d[..8]
        .iter()
        .zip((2..=9).rev())
        .map(|(&x, w)| i32::from(x) * w)
        .sum::<i32>()
        - i32::from(d[8]);
    sum % 11 == 0
}

/// Canadian SIN: Luhn.
fn sin(d: &[u8]) -> bool {
    d.len() == 9 && super::detect::luhn(d)
}

/// German Steuer-ID: ISO 7064 MOD 11,10; the first digit is not 0.
fn steuer_id(d: &[u8]) -> bool {
    if d.len() != 11 || d[0] == 0 {
        return false;
    }
    let mut product = 10u32;
    for &x in &d[..10] {
        let mut sum = (u32::from(x) + product) % 10;
        if sum == 0 {
            sum = 10;
        }
        product = (sum * 2) % 11;
    }
    let check = match 11 - product {
        10 => 0,
        c => c,
    };
    check == u32::from(d[10])
}

/// Polish PESEL: weights 1 3 7 9, repeated; the month field holds a valid month (+20·century).
fn pesel(d: &[u8]) -> bool {
    if d.len() != 11 {
        return false;
    }
    let month = u32::from(d[2]) * 10 + u32::from(d[3]);
    if !(1..=12).contains(&(month % 20)) {
        return false;
    }
    let sum: u32 = d[..10]
        .iter()
        .zip([1, 3, 7, 9].iter().cycle())
        .map(|(&x, &w)| u32::from(x) * w)
        .sum();
    (10 - sum % 10) % 10 == u32::from(d[10])
}

/// Belgian national register number: 97 minus the first nine digits mod 97 (with a 2 in front
/// for births from 2000).
fn belgian(d: &[u8]) -> bool {
    if d.len() != 11 {
        return false;
    }
    let base = number(&d[..9]);
    let check = number(&d[9..]);
    let month = number(&d[2..4]);
    month <= 12 && (97 - base % 97 == check || 97 - (2_000_000_000 + base) % 97 == check)
}

/// Indian Aadhaar: the Verhoeff check digit.
fn verhoeff(d: &[u8]) -> bool {
    const M: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const P: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    if d.len() != 12 {
        return false;
    }
    let mut c = 0u8;
    for (i, &x) in d.iter().rev().enumerate() {
        c = M[usize::from(c)][usize::from(P[i % 8][usize::from(x)])];
    }
    c == 0
}

const DNI_LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";

/// Spanish DNI (8 digits) and NIE (X, Y or Z and 7 digits): the letter is the number mod 23.
fn dni(s: &str) -> bool {
    let compact: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
    let Some((&letter, body)) = compact.split_last() else {
        return false;
    };
    let lead = match body.first() {
        Some(b'X') => Some(0),
        Some(b'Y') => Some(1),
        Some(b'Z') => Some(2),
        _ => None,
    };
    let d = digits(std::str::from_utf8(body).unwrap_or(""));
    let n = match lead {
        Some(l) => l * 10_000_000 + number(&d),
        None => number(&d),
    };
    DNI_LETTERS[(n % 23) as usize] == letter
}

/// French NIR: the key is 97 minus the 13-digit number mod 97 (Corsica: 2A → 19, 2B → 18).
fn nir(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| *c != ' ').collect();
    if compact.len() != 15 {
        return false;
    }
    let (body, key) = compact.split_at(13);
    let body = body.replace("2A", "19").replace("2B", "18");
    let (Ok(n), Ok(k)) = (body.parse::<u64>(), key.parse::<u64>()) else {
        return false;
    };
    (1..=97).contains(&k) && 97 - n % 97 == k
}

/// Italian codice fiscale: the last letter from the odd/even tables over the first fifteen.
fn codice_fiscale(s: &str) -> bool {
    const ODD: [u32; 26] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24,
        23,
    ];
    let b = s.as_bytes();
    if b.len() != 16 {
        return false;
    }
    let value = |c: u8| -> usize {
        match c {
            b'0'..=b'9' => usize::from(c - b'0'),
            _ => usize::from(c - b'A'),
        }
    };
    let sum: u32 = b[..15]
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if i % 2 == 0 {
                ODD[value(c)]
            } else {
                value(c) as u32
            }
        })
        .sum();
    u32::from(b[15] - b'A') == sum % 26
}

/// Swedish personnummer: a valid date (or coordination number, day + 60) and Luhn over the ten
/// digits YYMMDDNNNC.
fn personnummer(s: &str) -> bool {
    let d = digits(s);
    let d = if d.len() == 12 { &d[2..] } else { &d[..] };
    if d.len() != 10 {
        return false;
    }
    let month = number(&d[2..4]);
    let day = number(&d[4..6]);
    let day = if day > 60 { day - 60 } else { day };
    (1..=12).contains(&month) && (1..=31).contains(&day) && super::detect::luhn(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find(text, &text.to_ascii_lowercase(), gate::open(text), &mut out);
        out.iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(patterns().len(), PATTERNS);
    }

    #[test]
    fn check_digits_decide_and_bare_digit_schemes_need_their_word() {
        assert_eq!(found("NHS number: 943 476 5919"), vec!["943 476 5919"]);
        assert!(found("NHS number: 943 476 5918").is_empty(), "bad check");
        assert!(found("order 943 476 5919").is_empty(), "no context");
        assert_eq!(found("\"bsn\": \"111222333\""), vec!["111222333"]);
        assert_eq!(found("SIN 046 454 286"), vec!["046 454 286"]);
        assert!(found("using 046 454 286").is_empty());
        assert_eq!(found("Steuer-ID 86095742719"), vec!["86095742719"]);
        assert_eq!(found("PESEL: 44051401359"), vec!["44051401359"]);
        assert_eq!(found("Aadhaar 2341 2341 2346"), vec!["2341 2341 2346"]);
        assert_eq!(
            found("DNI 12345678Z, NIE X1234567L"),
            vec!["12345678Z", "X1234567L"]
        );
        assert!(found("DNI 12345678A").is_empty());
        assert_eq!(
            found("NIR 1 84 12 76 451 089 46"),
            vec!["1 84 12 76 451 089 46"]
        );
        assert_eq!(found("CF RSSMRA85T10A562S"), vec!["RSSMRA85T10A562S"]);
        assert!(found("CF RSSMRA85T10A562T").is_empty());
        assert_eq!(found("personnummer 811218-9876"), vec!["811218-9876"]);
        assert_eq!(found("NN 85.07.30-033.28"), vec!["85.07.30-033.28"]);
    }
}
