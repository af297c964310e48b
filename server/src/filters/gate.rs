//! One pass over a text that tells which of the detector's context patterns can match at all:
//! every pattern below needs one of its words somewhere in the text (case-insensitively), and
//! one Aho-Corasick automaton finds which groups of words occur. A pattern whose group is
//! absent is skipped; a gate never decides a finding, it only saves a regex pass.

use aho_corasick::AhoCorasick;
use std::sync::OnceLock;

pub(super) const BIRTH: u32 = 1;
pub(super) const STREET_FR: u32 = 1 << 1;
pub(super) const STREET_SUFFIX: u32 = 1 << 2;
pub(super) const STREET_LEAD: u32 = 1 << 3;
pub(super) const PO_BOX: u32 = 1 << 4;
pub(super) const ADDRESS_LABEL: u32 = 1 << 5;
pub(super) const ID_NINE: u32 = 1 << 6;
pub(super) const ID_TEN: u32 = 1 << 7;
pub(super) const ID_ELEVEN: u32 = 1 << 8;
pub(super) const ID_TWELVE: u32 = 1 << 9;
pub(super) const ID_PERSONNUMMER: u32 = 1 << 10;

const WORDS: &[(u32, &[&str])] = &[
    (
        BIRTH,
        &[
            "dob",
            "d.o.b",
            "birth",
            "born",
            "geb",
            "nacimiento",
            "nacid",
            "naissance",
            "née",
            "nee",
            "né ",
            "nascita",
            "nato",
            "nata",
            "geboorte",
            "geboren",
            "födelse",
            "fodelse",
            "född",
            "fodd",
            "urodzenia",
            "生年月日",
        ],
    ),
    (
        STREET_FR,
        &[
            "rue",
            "av",
            "bd",
            "boulevard",
            "place",
            "all",
            "chemin",
            "impasse",
            "quai",
            "route",
            "cours",
            "passage",
            "square",
        ],
    ),
    (
        STREET_SUFFIX,
        &[
            "str",
            "weg",
            "gasse",
            "allee",
            "platz",
            "damm",
            "ufer",
            "chaussee",
            "laan",
            "gracht",
            "plein",
            "kade",
            "singel",
            "dijk",
            "steeg",
            "gat",
            "väg",
            "gränd",
            "torg",
            "gade",
            "vej",
            "veien",
            "am ",
            "an der",
            "auf dem",
            "im ",
            "zum ",
            "zur ",
            "in der",
            "unter den",
            "ul.",
            "al.",
            "pl.",
            "os.",
        ],
    ),
    (
        STREET_LEAD,
        &[
            "calle",
            "avenida",
            "av.",
            "plaza",
            "paseo",
            "carrer",
            "camino",
            "ronda",
            "travesía",
            "via",
            "viale",
            "piazza",
            "corso",
            "largo",
            "vicolo",
            "rua",
            "travessa",
            "avenue",
            "rue",
        ],
    ),
    (PO_BOX, &["box", "postfach", "apartado", "casella"]),
    (
        ADDRESS_LABEL,
        &[
            "street",
            "addr",
            "line",
            "residence",
            "anschrift",
            "adres",
            "direcci",
            "indirizzo",
        ],
    ),
    (
        ID_NINE,
        &[
            "bsn",
            "sofi",
            "burgerservice",
            "sin",
            "social insurance",
            "nas",
        ],
    ),
    (ID_TEN, &["nhs"]),
    (
        ID_ELEVEN,
        &[
            "steuer",
            "idnr",
            "identifikationsnummer",
            "tax",
            "tin",
            "pesel",
            "rijksregister",
            "national",
            "registre",
            "nn",
            "insz",
            "niss",
        ],
    ),
    (ID_TWELVE, &["aadhaar", "aadhar", "uid"]),
    (ID_PERSONNUMMER, &["person", "pnr", "samordning"]),
];

fn automaton() -> Option<&'static (AhoCorasick, Vec<u32>)> {
    static A: OnceLock<Option<(AhoCorasick, Vec<u32>)>> = OnceLock::new();
    A.get_or_init(|| {
        let mut words = Vec::new();
        let mut groups = Vec::new();
        for (g, ws) in WORDS {
            for w in *ws {
                words.push(*w);
                groups.push(*g);
            }
        }
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&words)
            .ok()
            .map(|a| (a, groups))
    })
    .as_ref()
}

/// The groups whose words occur in `text` (every group, should the automaton not build).
pub(super) fn open(text: &str) -> u32 {
    let Some((ac, groups)) = automaton() else {
        return u32::MAX;
    };
    let mut open = 0;
    for m in ac.find_overlapping_iter(text) {
        open |= groups[m.pattern().as_usize()];
    }
    open
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_gate_finds_its_words_in_any_case() {
        assert!(super::automaton().is_some());
        let g = super::open("Date of BIRTH: 1 Jan 1990, NHS no 943 476 5919");
        assert_ne!(g & super::BIRTH, 0);
        assert_ne!(g & super::ID_TEN, 0);
        assert_eq!(g & super::PO_BOX, 0);
    }
}
