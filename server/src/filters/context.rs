//! Personal data that only its context gives away: dates of birth (a date next to "DOB", "born",
//! "Geburtsdatum"…), postal addresses (a house number and a street type, in the shapes of the
//! US, UK, Germany, the Netherlands, France, Spain, Italy and the Nordics, then the city and
//! postcode that follow), and person names (after a name label or field, a title, a greeting
//! or sign-off, a chat speaker's colon, or as a common given name followed by a capitalized
//! word). A name once found is found again wherever its words recur in the same answer.
//! No model and no dictionary of surnames: what is found is what the context says.

use super::detect::{Finding, Kind};
use super::gate;
use regex::Regex;
use std::collections::HashSet;
use std::sync::OnceLock;

/// Every date of birth, postal address and person name in `text` (not yet resolved against
/// other kinds).
/// `gates`: `gate::open(text)`.
pub(super) fn find(text: &str, gates: u32, out: &mut Vec<Finding>) {
    let Some(r) = res() else { return };
    let has_digit = text.bytes().any(|b| b.is_ascii_digit());
    if has_digit && gates & gate::BIRTH != 0 {
        dates_of_birth(r, text, out);
    }
    if has_digit {
        addresses(r, text, gates, out);
    }
    if text.bytes().any(|b| b.is_ascii_uppercase() || b >= 0x80) {
        names(r, text, out);
    }
}

/// One stage of `find`: its findings in a text.
pub type Stage = fn(&str, &mut Vec<Finding>);

/// The stages of `find` one by one, for the benchmark's breakdown of where the time goes.
#[doc(hidden)]
pub fn stages() -> [(&'static str, Stage); 5] {
    fn dob(t: &str, out: &mut Vec<Finding>) {
        if let Some(r) = res() {
            dates_of_birth(r, t, out);
        }
    }
    fn addr(t: &str, out: &mut Vec<Finding>) {
        if let Some(r) = res() {
            addresses(r, t, gate::open(t), out);
        }
    }
    fn name(t: &str, out: &mut Vec<Finding>) {
        if let Some(r) = res() {
            names(r, t, out);
        }
    }
    fn pairs(t: &str, out: &mut Vec<Finding>) {
        if let Some(r) = res() {
            let mut found = Vec::new();
            given_name_pairs(r, t, &word_spans(t), &mut found);
            out.extend(
                found
                    .into_iter()
                    .map(|(s, e)| finding(Kind::PersonName, s, e)),
            );
        }
    }
    fn spans(t: &str, out: &mut Vec<Finding>) {
        std::hint::black_box(word_spans(t));
        out.clear();
    }
    [
        ("dates of birth", dob),
        ("addresses", addr),
        ("names", name),
        ("names: given-name pairs", pairs),
        ("names: word spans", spans),
    ]
}

fn dates_of_birth(r: &Res, text: &str, out: &mut Vec<Finding>) {
    for label in r.dob.find_iter(text) {
        // The first date in the next few words, unless another date's word or a number
        // comes first ("DOB unknown, hired 2019-04-01" holds no date of birth).
        let mut to = (label.end() + 56).min(text.len());
        while !text.is_char_boundary(to) {
            to -= 1;
        }
        let window = &text[label.end()..to];
        let Some(d) = r.date.find(window) else {
            continue;
        };
        let gap = window[..d.start()].to_lowercase();
        let other = [
            "hire", "start", "join", "creat", "updat", "expir", "due", "issue", "eintritt",
            "regist", "modif", "since", "until", "valid", "death", "died", "sterbe", "today",
            "before", "after", "between", "older", "younger",
        ];
        // On the next line, only as the answer to the question (after a speaker's name).
        let answer = match gap.split_once('\n') {
            None => true,
            Some((_, next)) => {
                let next = next.trim_end();
                next.ends_with(':')
                    && next.len() <= 48
                    && !next.contains('\n')
                    && !next.starts_with(['[', '-', '#'])
            }
        };
        if gap.bytes().any(|b| b.is_ascii_digit())
            || other.iter().any(|w| gap.contains(w))
            || !answer
        {
            continue;
        }
        if valid_date(d.as_str()) {
            let at = label.end() + d.start();
            out.push(finding(Kind::DateOfBirth, at, at + d.len()));
        }
    }
}

fn finding(kind: Kind, start: usize, end: usize) -> Finding {
    Finding { kind, start, end }
}

struct Res {
    dob: Regex,
    date: Regex,
    street_us: Regex,
    street_fr: Regex,
    street_suffix: Regex,
    street_lead: Regex,
    po_box: Regex,
    address_key: Regex,
    tail: Vec<Regex>,
    name_key: Regex,
    strong_key: Regex,
    sql_insert: Regex,
    telling_column: Regex,
    person_key: Regex,
    honorific: Regex,
    greeting: Regex,
    speaker: Regex,
    name_rest: Regex,
}

/// A capitalized name word (`O'Brien`, `García-López`, `Zoë`).
const TOKEN: &str = r"\p{Lu}(?:[\p{L}'’-]*\p{Ll})?";
const PARTICLE: &str =
    r"(?:van|von|der|den|de|del|della|di|da|dos|du|la|le|bin|ibn|al|el|ter|ten|zu|y)";

const MONTHS: &str = r"(?:stycznia|lutego|marca|kwietnia|maja|czerwca|lipca|sierpnia|wrze[sś]nia|pa[zź]dziernika|listopada|grudnia|jan(?:uary|uar|vier)?|feb(?:ruary|ruar)?|f[ée]v(?:rier)?|mar(?:ch|s|zo)?|m[äa]rz|apr(?:il)?|avr(?:il)?|abr(?:il)?|may|mai|mayo|maggio|mei|jun(?:e|i)?|juin|junio|giugno|jul(?:y|i)?|juil(?:let)?|julio|luglio|aug(?:ust|usti)?|ao[uû]t|ago(?:sto)?|sep(?:t(?:ember)?)?|sept(?:iembre)?|settembre|oct(?:ober|obre)?|okt(?:ober)?|octubre|ottobre|nov(?:ember|embre)?|noviembre|dec(?:ember)?|dez(?:ember)?|d[ée]c(?:embre)?|dic(?:iembre|embre)?|gen(?:naio)?|ene(?:ro)?|febrero|febbraio|marzo|aprile|janv(?:ier)?|maart|oktober|december)";

/// The compiled patterns; `None` only if one of the constants below failed to compile (a unit
/// test proves they do), and then this module finds nothing rather than stopping the process.
fn res() -> Option<&'static Res> {
    static R: OnceLock<Option<Res>> = OnceLock::new();
    R.get_or_init(|| build().ok()).as_ref()
}

fn build() -> Result<Res, regex::Error> {
    let date = Regex::new(&format!(
        r"\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}[./-]\d{{1,2}}[./-]\d{{4}}|\d{{4}}/\d{{2}}/\d{{2}}|\d{{4}}年\d{{1,2}}月\d{{1,2}}日|\d{{1,2}}(?:st|nd|rd|th|er)?\.?[ \t]+(?:de[ \t]+)?(?i:{MONTHS})\.?,?[ \t]+(?:de[ \t]+)?\d{{4}}|(?i:{MONTHS})\.?[ \t]+\d{{1,2}}(?:st|nd|rd|th)?,?[ \t]+\d{{4}}"
    ))?;
    let dob = Regex::new(
        r"(?i:(?-u:\b)(?:dob|d\.o\.b\.?|date[ _-]?of[ _-]?birth|birth[ _-]?date|birthdate|birthday|born(?:[ _-]?on)?|geburtsdatum|geboren(?: am)?|geb\.|fecha[ _]de[ _]nacimiento|fecha_nacimiento|nacid[oa](?: el)?|date[ _]de[ _]naissance|n[ée]e? le|née|data[ _]di[ _]nascita|data[ _]nascita|nat[oa] il|geboortedatum|geboren op|f[öo]delsedatum|f[öo]dd|data[ _]urodzenia)|生年月日)",
    )?;
    let street_types = r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Terrace|Ter|Way|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Square|Sq|Close|Crescent|Cres|Gardens|Grove|Row|Walk|Hill|Mews|Trail|Trl|Plaza|Loop|Alley|Pike|Green|Rise|Vale|View|Wharf|Quay|Embankment|Esplanade|Heights|Park)";
    let unit = r"(?:(?:Flat|Apt|Apartment|Unit|Suite|Ste)\.?\s+[A-Za-z0-9-]{1,6},?\s+)";
    let street_us = Regex::new(&format!(
        r"(?-u:\b){unit}?\d{{1,5}}[A-Za-z]?(?:-\d{{1,5}})?\s+(?:(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\.?\s+)?(?:(?:\p{{Lu}}[\p{{L}}'’.-]*|\d{{1,3}}(?:st|nd|rd|th))\s+){{1,4}}{street_types}(?-u:\b)\.?"
    ))?;
    let street_fr = Regex::new(
        r"(?i:(?-u:\b)\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|av\.|boulevard|bd|place|allée|allee|chemin|impasse|quai|route|cours|passage|square))\s+(?:(?:de|du|des|la|le|l'|d')\s*)*\p{Lu}[\p{L}'’-]*(?:\s+(?:(?:de|du|des|la|le|l'|d')\s*)*\p{Lu}[\p{L}'’-]*){0,3}",
    )?;
    let suffixes = r"(?:straße|strasse|str\.|weg|gasse|allee|platz|damm|ufer|chaussee|laan|straat|gracht|plein|kade|singel|dijk|steeg|gatan|vägen|gränd|torg|gade|vej|veien|gata)";
    let street_suffix = Regex::new(&format!(
        r"(?:\p{{Lu}}[\p{{L}}-]*{suffixes} \d{{1,4}}[a-zA-Z]?(?:[-/]\d{{1,4}})?(?-u:\b)|\d{{1,5}} \p{{Lu}}[\p{{L}}-]*{suffixes}(?-u:\b)|(?:Am|An der|Auf dem|Im|Zum|Zur|In der|Unter den) \p{{Lu}}[\p{{L}}-]+ \d{{1,4}}[a-zA-Z]?(?-u:\b)|(?:ul|al|pl|os)\. \p{{Lu}}[\p{{L}}-]+(?: \p{{Lu}}[\p{{L}}-]+)? \d{{1,4}}[a-zA-Z]?(?:/\d{{1,4}})?)"
    ))?;
    let street_lead = Regex::new(
        r"(?-u:\b)(?:\d{1,5}[ \t]+(?:Calle|Avenida|Via|Rua|Rue|Carrer)[ \t]+(?:(?:de|del|de la|la|las|los|di|della|dei|do|da|dos|des|du)[ \t]+)*\p{Lu}[\p{L}'’-]*(?:[ \t]+\p{Lu}[\p{L}'’-]*){0,2}|(?:Calle|Avenida|Av\.|Plaza|Paseo|Carrer|Camino|Ronda|Travesía|Via|Viale|Piazza|Corso|Largo|Vicolo|Rua|Travessa|Avenue|Rue)\s+(?:(?:de|del|de la|la|las|los|di|della|dei|delle|do|da|dos|das)\s+)*\p{Lu}[\p{L}'’-]*(?:\s+(?:(?:de|del|la|di|della|da|do)\s+)*\p{Lu}[\p{L}'’-]*){0,3},?\s+(?:n\.?º?\s*)?\d{1,4}[a-zA-Z]?(?-u:\b))",
    )?;
    let po_box = Regex::new(
        r"(?-u:\b)(?:P\.?\s?O\.?\s?Box|Postfach|Apartado(?: de correos)?|Casella postale)\s+\d{1,6}(?-u:\b)",
    )?;
    let address_key = Regex::new(
        r#"(?i:(?-u:\b)(?:street|street_?address|address(?:_?line)?_?1?|addr(?:ess)?1?|line_?1|home_?address|mailing_?address|postal_?address|billing_?address|shipping_?address|residence|anschrift|adresse|direcci[oó]n|indirizzo|adres)(?-u:\b))["']?[ \t]*[:=][ \t]*["']?([^"'\n]{4,100})"#,
    )?;
    let city = r"\p{Lu}[\p{L}'’-]*\b(?:[ \t]+(?:upon|on|am|an der|sur|en|de|del|la)?[ \t]*\p{Lu}[\p{L}'’-]*\b){0,2}";
    let tail = [
        // Unit after the street.
        r"^,?[ \t]+(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm|bus|#)\.?[ \t]*#?[A-Za-z0-9-]{1,6}".to_owned(),
        // A Spanish floor and door ("3º B").
        r"^,[ \t]*\d{1,2}[º°ª](?:[ \t]?[A-Z]\b)?".to_owned(),
        // A US state and ZIP code.
        r"^,?[ \t]+[A-Z]{2}[ \t]+(?:\d{5}(?:-\d{4})?|[A-Z]\d[A-Z][ \t]?\d[A-Z]\d)\b".to_owned(),
        // An Indian PIN code.
        r"^,?[ \t]+\d{6}\b".to_owned(),
        // A UK postcode.
        r"^,?[ \t]+[A-Z]{1,2}\d[A-Z\d]?[ \t]\d[A-Z]{2}\b".to_owned(),
        // A postcode then a city (Europe), or a Dutch postcode.
        format!(r"^,?[ \t]+(?:[A-Z]{{1,2}}-)?(?:\d{{4,5}}|\d{{3}} \d{{2}}|\d{{2}}-\d{{3}})(?:[ \t]?[A-Z]{{2}})?[ \t]+{city}"),
        // A city.
        format!(r"^,[ \t]*{city}"),
        // A country.
        r"^,?[ \t]+(?:USA|U\.S\.A\.|United States|UK|United Kingdom|Germany|Deutschland|France|Spain|España|Italy|Italia|Netherlands|Nederland|Belgium|Sweden|Norway|Denmark|Ireland|Canada|Australia|Poland|Portugal|Austria|Switzerland|India)\b".to_owned(),
    ]
    .iter()
    .map(|t| Regex::new(t))
    .collect::<Result<Vec<_>, _>>()?;
    let name =
        format!(r"(?:\p{{Lu}}\.[ \t]?)?{TOKEN}(?:[ \t]+(?:{PARTICLE}[ \t]+){{0,2}}{TOKEN}){{0,3}}");
    let name_key = Regex::new(&format!(
        r#"(?i:(?-u:\b)({STRONG_KEYS}|{PERSON_KEYS}|{WEAK_KEYS})(?-u:\b))["']?[ \t]*[:=][ \t]*\[?[ \t]*["']?({TOKEN}(?:[ \t]+{TOKEN})?,[ \t]+{TOKEN}|{name})"#
    ))?;
    let honorific = Regex::new(&format!(r"(?-u:\b)(?:(?:{HONORIFICS})\.?[ \t]+)+({name})"))?;
    let greeting = Regex::new(&format!(
        r"(?m)(?:^|[\s>'(])(?:Hi|Hello|Hey|Dear|Hallo|Hola|Bonjour|Ciao|Hej|Hei|Salut|Liebe|Lieber|Estimado|Estimada|Cher|Chère|Caro|Cara|Beste|Thanks|Thank you|Cheers|Regards|Best regards|Kind regards|Best|Sincerely|Many thanks|Gracias|Merci|Danke|Grazie|Bedankt|Saludos|Cordialement|Grüße|Gruß|Mit freundlichen Grüßen|Met vriendelijke groet)[ \t]*,?[ \t]*(?:\r?\n[ \t]*)?({name})[ \t]*(?:[,!.:\r\n—-]|$)"
    ))?;
    let speaker = Regex::new(&format!(
        r"(?m)^[ \t]*(?:\[[^\]\n]{{1,30}}\][ \t]*)?({name})(?:[ \t]*\([^)\n]{{1,40}}\))?:[ \t]"
    ))?;
    let name_rest = Regex::new(&format!(
        r"^(?:[ \t]+(?:{PARTICLE}[ \t]+){{0,2}}{TOKEN}){{1,2}}"
    ))?;
    Ok(Res {
        dob,
        date,
        street_us,
        street_fr,
        street_suffix,
        street_lead,
        po_box,
        address_key,
        tail,
        name_key,
        strong_key: Regex::new(&format!(r"(?i)^(?:{STRONG_KEYS})$"))?,
        person_key: Regex::new(&format!(r"(?i)^(?:{PERSON_KEYS})$"))?,
        sql_insert: Regex::new(
            r#"(?i)(?-u:\b)insert\s+into\s+[\w."`\[\]]+\s*\(([^)]{1,2000})\)\s*values\s*"#,
        )?,
        telling_column: Regex::new(
            r"(?i)name|nom|naam|cognome|apellido|birth|dob|geburt|nacimiento|naissance|nascita|geboorte|bsn|nhs|sin(?-u:\b)|steuer|tax|pesel|aadhaar|personnummer|codice|fiscal|dni|nie(?-u:\b)|nir(?-u:\b)|insee|national|ssn|document|address|street|line1|anschrift|adres|indirizzo|direcci|contact|employee|patient|manager|owner",
        )?,
        honorific,
        greeting,
        speaker,
        name_rest,
    })
}

/// Labels and fields whose value is a person's name, whatever the name.
const STRONG_KEYS: &str = r"first[ _-]?name|given[ _-]?name|fore[ _-]?name|last[ _-]?name|family[ _-]?name|sur[ _-]?name|full[ _-]?name|display[ _-]?name|legal[ _-]?name|preferred[ _-]?name|contact[ _-]?name|customer[ _-]?name|employee[ _-]?name|patient[ _-]?name|client[ _-]?name|candidate[ _-]?name|applicant[ _-]?name|member[ _-]?name|holder[ _-]?name|account[ _-]?holder|card[ _-]?holder(?:[ _-]?name)?|beneficiary[ _-]?name|manager[ _-]?name|owner[ _-]?name|person[ _-]?name|(?:father|mother|parent|spouse|partner|guardian|child|son|daughter|maiden)[ _-]?name|nombre|apellidos?|vorname|nachname|prénom|prenom|nom|cognome|voornaam|achternaam";
/// Labels and fields that hold a person, and sometimes a team or a system: two or more name
/// words there (none of them an organisation's or a role's word) are a name.
const PERSON_KEYS: &str = r"contact|employee|patient|manager|assignee|reporter|requester|requested[ _-]?by|applicant|candidate|recipient|signed[ _-]?by|approved[ _-]?by|submitted[ _-]?by|reviewed[ _-]?by|closed[ _-]?by|assigned[ _-]?to|account[ _-]?owner|sales[ _-]?rep|emergency[ _-]?contact|contact[ _-]?person|contactpersoon|ansprechpartner|spouse|physician|doctor|guardian|beneficiary|witness|passenger|travell?er|approver|interviewer|hiring[ _-]?manager|mentor|supervisor|student|caller|signatory|responsabile|real[ _-]?name|dependent|dependant|next[ _-]?of[ _-]?kin|mitarbeiter|empleado|dipendente|medewerker";
/// Labels and fields that often hold a person's name, and as often a company, a product or a
/// system: a name there needs a common given name first.
const WEAK_KEYS: &str = r"name|naam|nome|customer|client|author|owner|sender|created[ _-]?by|updated[ _-]?by|agent|rep|attendees?|invitees?|participants?|from|to|cc|driver|guest|buyer|seller|member|user|speaker|host|organizer|organiser|lead|champion";

/// Titles before a name, never part of it.
const HONORIFICS: &str = r"Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Herr|Frau|Mme|Mlle|Mevr|Dhr|Sr|Sra|Srta|Dott|Dottssa|Sig|Signora|Madame|Monsieur|Señor|Señora|Don|Doña";

fn given_names() -> &'static HashSet<&'static str> {
    static G: OnceLock<HashSet<&'static str>> = OnceLock::new();
    G.get_or_init(|| word_list(include_str!("given_names.txt")))
}

/// A common given name, or a double one whose first part is (`Jan-Willem`).
fn is_given(given: &HashSet<&str>, word: &str) -> bool {
    given.contains(word) || word.split_once('-').is_some_and(|(a, _)| given.contains(a))
}

fn word_list(text: &'static str) -> HashSet<&'static str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Words that end a name or show that a capitalized phrase is not one (`not_names.txt`).
fn not_name(word: &str) -> bool {
    static W: OnceLock<HashSet<&'static str>> = OnceLock::new();
    W.get_or_init(|| word_list(include_str!("not_names.txt")))
        .contains(word.trim_end_matches('.'))
}

/// Surnames that are everyday words, not looked for again on their own (`common_surnames.txt`).
fn common_word(word: &str) -> bool {
    static W: OnceLock<HashSet<&'static str>> = OnceLock::new();
    W.get_or_init(|| word_list(include_str!("common_surnames.txt")))
        .contains(word)
}

/// The words of a name (particles left out).
fn words(name: &str) -> Vec<&str> {
    name.split_whitespace()
        .filter(|w| w.chars().next().is_some_and(char::is_uppercase))
        .collect()
}

/// Cuts trailing words that are not part of a name; `None` if nothing plausible is left.
fn trim_name(text: &str, mut start: usize, end: usize) -> Option<(usize, usize)> {
    // Leading titles ("Herr Schäfer" after a greeting) are not part of the name.
    loop {
        let rest = &text[start..end];
        let first = rest.split_whitespace().next().unwrap_or("");
        let bare = first.trim_end_matches('.');
        if first.len() < rest.len() && HONORIFICS.split('|').any(|h| h == bare) {
            let skip = rest.find(first).unwrap_or(0) + first.len();
            start += skip + (rest[skip..].len() - rest[skip..].trim_start().len());
        } else {
            break;
        }
    }
    if HONORIFICS
        .split('|')
        .any(|h| h == text[start..end].trim().trim_end_matches('.'))
    {
        return None;
    }
    let mut e = end;
    loop {
        let s = text[start..e].trim_end();
        // After the last whitespace character, whatever its width (a no-break space is two bytes).
        let last_start = s
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8());
        let last = &s[last_start..];
        if !not_name(last) {
            let ws = words(s);
            if ws.is_empty() || ws.iter().any(|w| not_name(w)) {
                return None;
            }
            return Some((start, start + s.len()));
        }
        if last_start == 0 {
            return None;
        }
        e = start + last_start;
    }
}

/// The words of a text (letters, with inner hyphens and apostrophes) as byte spans.
fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, ch) in text.char_indices() {
        let inner = start.is_some() && matches!(ch, '-' | '\'' | '’');
        if ch.is_alphabetic() || ch.is_numeric() || inner {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            out.push(trim_word(text, s, i));
        }
    }
    if let Some(s) = start {
        out.push(trim_word(text, s, text.len()));
    }
    out
}

/// A word without the hyphens and apostrophes it may end with.
fn trim_word(text: &str, s: usize, e: usize) -> (usize, usize) {
    (s, s + text[s..e].trim_end_matches(['-', '\'', '’']).len())
}

/// A common given name and one or two capitalized words after it, anywhere: over the words of
/// the text (`word_spans`, shared with the recurrence pass), the pattern runs only after a
/// given name.
fn given_name_pairs(
    r: &Res,
    text: &str,
    spans: &[(usize, usize)],
    found: &mut Vec<(usize, usize)>,
) {
    let given = given_names();
    let mut skip_to = 0;
    for &(start, end) in spans {
        if start < skip_to || !text[start..].chars().next().is_some_and(char::is_uppercase) {
            continue;
        }
        // Not the tail of an address, a domain or an identifier.
        let glued = text[..start]
            .chars()
            .next_back()
            .is_some_and(|p| matches!(p, '@' | '.' | '_'));
        if glued || !is_given(given, &text[start..end]) {
            continue;
        }
        if let Some(m) = r.name_rest.find(&text[end..]) {
            if let Some(span) = trim_name(text, start, end + m.end()) {
                if words(&text[span.0..span.1]).len() >= 2 {
                    found.push(span);
                    skip_to = span.1;
                }
            }
        }
    }
}

fn names(r: &Res, text: &str, out: &mut Vec<Finding>) {
    let given = given_names();
    let mut found: Vec<(usize, usize)> = Vec::new();
    for c in r.name_key.captures_iter(text) {
        let (Some(k), Some(m)) = (c.get(1), c.get(2)) else {
            continue;
        };
        if !value_ends(text, m.end()) {
            continue;
        }
        let Some((s, e)) = trim_name(text, m.start(), m.end()) else {
            continue;
        };
        let value = &text[s..e];
        let ws = words(value);
        // "Surname, Given": the given name is the last word.
        let first = if value.contains(',') {
            ws.last()
        } else {
            ws.first()
        };
        let first = first.copied().unwrap_or("");
        let key = k.as_str();
        let last = ws.last().copied().unwrap_or("");
        let ok = r.strong_key.is_match(key)
            || is_given(given, first)
            || (ws.len() >= 2 && is_given(given, last))
            || (r.person_key.is_match(key) && ws.len() >= 2);
        if ok {
            found.push((s, e));
        }
    }
    for re in [&r.honorific, &r.greeting] {
        for c in re.captures_iter(text) {
            let Some(m) = c.get(1) else { continue };
            if let Some(span) = trim_name(text, m.start(), m.end()) {
                found.push(span);
            }
        }
    }
    for c in r.speaker.captures_iter(text) {
        let Some(m) = c.get(1) else { continue };
        let first = words(m.as_str()).first().copied().unwrap_or("");
        if is_given(given, first) {
            if let Some(span) = trim_name(text, m.start(), m.end()) {
                found.push(span);
            }
        }
    }
    let spans = word_spans(text);
    given_name_pairs(r, text, &spans, &mut found);
    // The words of every name found recur elsewhere in the answer: "Thanks, Liam" after
    // "contact: Liam Petrov".
    let mut parts: HashSet<&str> = HashSet::new();
    // Whole names found, by their first word.
    let mut full: std::collections::HashMap<&str, Vec<&str>> = std::collections::HashMap::new();
    for &(s, e) in &found {
        let ws = words(&text[s..e]);
        if ws.len() >= 2 {
            let first = text[s..e].split_whitespace().next().unwrap_or("");
            full.entry(first).or_default().push(&text[s..e]);
        }
        for w in ws {
            if w.chars().count() >= 3 && !common_word(w) && !not_name(w) {
                parts.insert(w.trim_end_matches(','));
            }
        }
    }
    if parts.is_empty() && full.is_empty() {
        for (s, e) in found {
            out.push(finding(Kind::PersonName, s, e));
        }
        return;
    }
    // One walk over the words of the text: a word that is a part of a name found, or the start
    // of a whole name found, not inside an e-mail address, a domain or a path.
    let in_address = |c: Option<char>| matches!(c, Some('@' | '.' | '/' | '_'));
    for &(ws, we) in &spans {
        let before = text[..ws].chars().next_back();
        if in_address(before) {
            continue;
        }
        let ends_clean = |e: usize| {
            let mut after = text[e..].chars();
            let a = after.next();
            !(in_address(a) && after.next().is_some_and(char::is_alphanumeric))
        };
        let w = &text[ws..we];
        if parts.contains(w) && ends_clean(we) {
            found.push((ws, we));
        }
        for f in full.get(w).map(Vec::as_slice).unwrap_or_default() {
            if text[ws..].starts_with(f) {
                let fe = ws + f.len();
                let next = text[fe..].chars().next();
                if next.is_none_or(|c| !c.is_alphanumeric()) && ends_clean(fe) {
                    found.push((ws, fe));
                }
            }
        }
    }
    for (s, e) in found {
        out.push(finding(Kind::PersonName, s, e));
    }
}

/// A labelled value ends here: a quote, a separator, the end of the line or text, or an
/// e-mail address or bracket after a space.
fn value_ends(text: &str, at: usize) -> bool {
    let rest = &text[at..];
    let mut cs = rest.chars();
    match cs.next() {
        None => true,
        Some('"' | '\'' | ',' | ';' | '\n' | '\r' | '|' | '\t' | ']' | ')' | '}' | '<') => true,
        Some(' ') => matches!(cs.next(), Some('<' | '(' | '-' | '—' | '|' | '/') | None),
        _ => false,
    }
}

/// Day, month and year are a real calendar date between 1900 and 2099.
fn valid_date(s: &str) -> bool {
    let nums: Vec<u32> = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect();
    let year_ok = |y: u32| (1900..=2099).contains(&y);
    match nums.as_slice() {
        // ISO or year-first.
        [y, m, d] if *y >= 1000 => year_ok(*y) && (1..=12).contains(m) && (1..=31).contains(d),
        // Day and month in either order.
        [a, b, y] => {
            year_ok(*y)
                && (((1..=31).contains(a) && (1..=12).contains(b))
                    || ((1..=12).contains(a) && (1..=31).contains(b)))
        }
        // A month name: day and year.
        [d, y] => year_ok(*y) && (1..=31).contains(d),
        _ => false,
    }
}

fn addresses(r: &Res, text: &str, gates: u32, out: &mut Vec<Finding>) {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    // Each shape runs only where one of its words occurs at all.
    let shapes = [
        (&r.street_us, true),
        (&r.street_fr, gates & gate::STREET_FR != 0),
        (&r.street_suffix, gates & gate::STREET_SUFFIX != 0),
        (&r.street_lead, gates & gate::STREET_LEAD != 0),
        (&r.po_box, gates & gate::PO_BOX != 0),
    ];
    for (re, _) in shapes.iter().filter(|(_, on)| *on) {
        for m in re.find_iter(text) {
            let before = text[..m.start()].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '-' || c == '/') {
                continue;
            }
            spans.push((m.start(), extend(r, text, m.end())));
        }
    }
    // A field or label that holds an address: its value, when it has a house number.
    let address_keys = if gates & gate::ADDRESS_LABEL != 0 {
        r.address_key.captures_iter(text).collect()
    } else {
        Vec::new()
    };
    for c in address_keys {
        let Some(m) = c.get(1) else { continue };
        let v = m.as_str().trim_end_matches([',', ' ', '.']);
        let has_number = v.split_whitespace().any(|w| {
            w.trim_end_matches(',')
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
                && w.len() <= 6
        });
        let letters = v.chars().filter(|c| c.is_alphabetic()).count();
        if has_number
            && letters >= 4
            && !v.contains('@')
            && !v.contains("://")
            && v.parse::<std::net::IpAddr>().is_err()
            && v.chars().filter(char::is_ascii_digit).count() < 12
        {
            spans.push((m.start(), m.start() + v.len()));
        }
    }
    for (s, e) in spans {
        let e = s + text[s..e].trim_end_matches([',', ' ', '\t']).len();
        out.push(finding(Kind::PostalAddress, s, e));
    }
}

/// Extends a street to the unit, city, state, postcode and country that follow it on the same
/// line, as far as the text still reads as an address and ends where a value ends.
fn extend(r: &Res, text: &str, mut end: usize) -> usize {
    let mut ends = vec![end];
    'outer: for _ in 0..6 {
        for t in &r.tail {
            if let Some(m) = t.find(&text[end..]) {
                end += m.end();
                ends.push(end);
                continue 'outer;
            }
        }
        break;
    }
    // The longest reading that ends where an address can end.
    ends.into_iter()
        .rev()
        .find(|&e| {
            let rest = &text[e..];
            let mut cs = rest.chars();
            match cs.next() {
                None => true,
                Some('"' | '\'' | '\n' | '\r' | ';' | ')' | ']' | '}' | '|' | '\t' | '<') => true,
                Some('.' | ',') => cs.next().is_none_or(|c| c.is_whitespace() || c == '"'),
                Some(' ') => {
                    let w: String = cs.take_while(|c| c.is_alphanumeric()).collect();
                    w.chars().next().is_some_and(char::is_lowercase)
                        || w.is_empty()
                        || matches!(w.as_str(), "USA" | "UK")
                }
                _ => false,
            }
        })
        .unwrap_or(end)
}

/// The cells of the tables in `text` whose column names may say what they hold (at most
/// `MAX_TABLE_CELLS`): CSV (comma,
/// semicolon, tab or bar) under a header line, and SQL `INSERT … (columns) VALUES (…), (…)`.
/// Each cell as (column name, start, end).
pub(super) fn table_cells(text: &str) -> Vec<(&str, usize, usize)> {
    let mut cells = Vec::new();
    let Some(r) = res() else { return cells };
    if text.contains("VALUES") || text.contains("values") {
        for c in r.sql_insert.captures_iter(text) {
            let (Some(cols), Some(all)) = (c.get(1), c.get(0)) else {
                continue;
            };
            let names: Vec<&str> = cols
                .as_str()
                .split(',')
                .map(|n| n.trim().trim_matches(['"', '`', '[', ']']))
                .collect();
            sql_tuples(text, all.end(), &names, &mut cells);
        }
    }
    let lines: Vec<(usize, &str)> = text
        .split_inclusive('\n')
        .scan(0, |at, l| {
            let start = *at;
            *at += l.len();
            Some((start, l.trim_end_matches(['\n', '\r'])))
        })
        .collect();
    let mut i = 0;
    while i < lines.len() {
        let (_, header) = lines[i];
        i += 1;
        let Some(delim) = [',', ';', '\t', '|']
            .into_iter()
            .filter(|d| header.matches(*d).count() >= 2)
            .max_by_key(|d| header.matches(*d).count())
        else {
            continue;
        };
        let names: Vec<&str> = header
            .split(delim)
            .map(|n| n.trim().trim_matches('"'))
            .collect();
        let identifiers = names.iter().all(|n| {
            !n.is_empty()
                && n.len() <= 40
                && n.chars().next().is_some_and(char::is_alphabetic)
                && n.chars().all(|c| c.is_alphanumeric() || " _.-".contains(c))
        });
        if !identifiers || !names.iter().any(|n| r.telling_column.is_match(n)) {
            continue;
        }
        while i < lines.len() {
            let (start, line) = lines[i];
            let row = split_row(line, delim);
            if row.len() != names.len() {
                break;
            }
            for (name, (s, e)) in names.iter().zip(row) {
                if e > s {
                    cells.push((*name, start + s, start + e));
                }
            }
            i += 1;
        }
    }
    // A bounded number of cells: each is scanned on its own (a fixed cost per cell); a huge
    // table's other cells are still in the scan of the text.
    cells.truncate(MAX_TABLE_CELLS);
    cells
}

/// The most table cells read with their column names per text.
const MAX_TABLE_CELLS: usize = 2_000;

/// The fields of one CSV line (quoted fields without their quotes), as byte ranges.
fn split_row(line: &str, delim: char) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut field_start = 0;
    let mut quoted = false;
    for (i, ch) in line.char_indices() {
        if ch == '"' {
            quoted = !quoted;
        } else if ch == delim && !quoted {
            out.push(trim_field(line, field_start, i));
            field_start = i + ch.len_utf8();
        }
    }
    out.push(trim_field(line, field_start, line.len()));
    out
}

fn trim_field(line: &str, s: usize, e: usize) -> (usize, usize) {
    let f = &line[s..e];
    let lead = f.len() - f.trim_start().len();
    let f = f.trim();
    let (s, mut len) = (s + lead, f.len());
    if len >= 2 && f.starts_with(['"', '\'']) && f.ends_with(['"', '\'']) {
        return (s + 1, s + len - 1);
    }
    if f.is_empty() {
        len = 0;
    }
    (s, s + len)
}

/// The tuples after `VALUES`: each value's span (a quoted string without its quotes).
fn sql_tuples<'a>(
    text: &str,
    mut at: usize,
    names: &[&'a str],
    cells: &mut Vec<(&'a str, usize, usize)>,
) {
    let b = text.as_bytes();
    loop {
        while at < b.len() && (b[at].is_ascii_whitespace() || b[at] == b',') {
            at += 1;
        }
        if at >= b.len() || b[at] != b'(' {
            return;
        }
        at += 1;
        let mut col = 0;
        loop {
            while at < b.len() && b[at] == b' ' {
                at += 1;
            }
            let (s, e);
            if at < b.len() && b[at] == b'\'' {
                s = at + 1;
                at += 1;
                while at < b.len() && !(b[at] == b'\'' && b.get(at + 1) != Some(&b'\'')) {
                    at += if b[at] == b'\'' { 2 } else { 1 };
                }
                e = at.min(b.len());
                at += 1;
            } else {
                s = at;
                while at < b.len() && b[at] != b',' && b[at] != b')' && b[at] != b'\n' {
                    at += 1;
                }
                e = s + text[s..at].trim_end().len();
            }
            if let Some(name) = names.get(col) {
                if e > s && text.is_char_boundary(s) && text.is_char_boundary(e) {
                    cells.push((name, s, e));
                }
            }
            col += 1;
            while at < b.len() && b[at] == b' ' {
                at += 1;
            }
            match b.get(at) {
                Some(b',') => at += 1,
                Some(b')') => {
                    at += 1;
                    break;
                }
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(Kind, &str)> {
        super::super::detect::scan(text)
            .iter()
            .map(|f| (f.kind, &text[f.start..f.end]))
            .collect()
    }

    #[test]
    fn the_patterns_compile() {
        assert!(build().is_ok());
        assert!(!given_names().is_empty());
    }

    #[test]
    fn dates_of_birth_need_their_words() {
        assert_eq!(
            found("DOB: 12/03/1984, hired 2019-04-01"),
            vec![(Kind::DateOfBirth, "12/03/1984")]
        );
        assert_eq!(
            found("\"date_of_birth\": \"1984-03-12\""),
            vec![(Kind::DateOfBirth, "1984-03-12")]
        );
        assert_eq!(
            found("Geburtsdatum: 12. März 1984"),
            vec![(Kind::DateOfBirth, "12. März 1984")]
        );
        assert!(found("created 2024-01-02 by the birthday job")
            .iter()
            .all(|(k, _)| *k != Kind::DateOfBirth));
    }

    #[test]
    fn addresses_run_from_the_number_to_the_postcode() {
        assert_eq!(
            found("Ship to 742 Evergreen Terrace, Springfield, IL 62704."),
            vec![(
                Kind::PostalAddress,
                "742 Evergreen Terrace, Springfield, IL 62704"
            )]
        );
        assert_eq!(
            found("Hauptstraße 12, 10115 Berlin"),
            vec![(Kind::PostalAddress, "Hauptstraße 12, 10115 Berlin")]
        );
        assert_eq!(
            found("office at 12 rue de Rivoli, 75001 Paris"),
            vec![(Kind::PostalAddress, "12 rue de Rivoli, 75001 Paris")]
        );
        assert!(found("the Main Street office, version 2 Road map").is_empty());
    }

    #[test]
    fn names_come_from_their_context_and_recur() {
        let t = "{\"contact\": \"Liam Petrov\", \"company\": \"Adventure Works\"}\nThanks, Liam";
        assert_eq!(
            found(t),
            vec![
                (Kind::PersonName, "Liam Petrov"),
                (Kind::PersonName, "Liam")
            ]
        );
        assert!(found("{\"name\": \"Adventure Works\", \"owner\": \"Platform Team\"}").is_empty());
        assert_eq!(
            found("Dr. Aiko Nguyen, CFO, met Ms Okafor."),
            vec![
                (Kind::PersonName, "Aiko Nguyen"),
                (Kind::PersonName, "Okafor")
            ]
        );
    }
}

#[cfg(test)]
mod trim_tests {
    #[test]
    fn trimming_a_name_respects_wide_whitespace() {
        let t = "Liam\u{a0}Petrov\u{a0}Team";
        assert_eq!(
            super::trim_name(t, 0, t.len()),
            Some((0, "Liam\u{a0}Petrov".len()))
        );
    }
}

#[cfg(test)]
mod table_tests {
    #[test]
    fn table_cells_are_read_with_their_column_names_and_bounded() {
        let mut csv = String::from("id,full_name,notes\n");
        for i in 0..3000 {
            csv.push_str(&format!("{i},Anna Berg,ok\n"));
        }
        let cells = super::table_cells(&csv);
        assert_eq!(cells.len(), super::MAX_TABLE_CELLS);
        let (name, s, e) = cells[1];
        assert_eq!((name, &csv[s..e]), ("full_name", "Anna Berg"));
        let sql = "INSERT INTO p (id, given_name, dob) VALUES (1, 'Eleanor', '1961-01-23'), (2, 'Kwabena', NULL);";
        let cells: Vec<(&str, &str)> = super::table_cells(sql)
            .into_iter()
            .map(|(n, s, e)| (n, &sql[s..e]))
            .collect();
        assert_eq!(
            cells,
            vec![
                ("id", "1"),
                ("given_name", "Eleanor"),
                ("dob", "1961-01-23"),
                ("id", "2"),
                ("given_name", "Kwabena"),
                ("dob", "NULL")
            ]
        );
    }
}
