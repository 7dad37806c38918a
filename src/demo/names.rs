//! Name pools per country, with the nicknames people actually use.

use super::geo::Country;

/// A given name, its common nicknames and grammatical gender.
#[derive(Debug)]
pub struct FirstName {
    pub name: &'static str,
    pub nicks: &'static [&'static str],
    pub female: bool,
}

const fn m(name: &'static str, nicks: &'static [&'static str]) -> FirstName {
    FirstName {
        name,
        nicks,
        female: false,
    }
}
const fn f(name: &'static str, nicks: &'static [&'static str]) -> FirstName {
    FirstName {
        name,
        nicks,
        female: true,
    }
}

#[rustfmt::skip]
static DE_FIRST: &[FirstName] = &[
    f("Anna", &["Anni"]), f("Katharina", &["Kathi", "Kati", "Katja"]),
    m("Johannes", &["Hans", "Jo"]), m("Maximilian", &["Max"]), m("Alexander", &["Alex"]),
    m("Andreas", &["Andi"]), m("Christian", &["Chris"]), f("Elisabeth", &["Lisa", "Sissi", "Liesl"]),
    f("Stefanie", &["Steffi"]), f("Franziska", &["Franzi"]), m("Friedrich", &["Fritz"]),
    f("Gabriele", &["Gabi"]), m("Wolfgang", &["Wolf"]), m("Jürgen", &[]), m("Björn", &[]),
    m("Sören", &[]), m("Jörg", &[]), m("Günther", &[]), f("Lena", &[]), f("Sophie", &["Sophia"]),
    f("Hannah", &["Hanna"]), m("Lukas", &["Luke"]), m("Tobias", &["Tobi"]),
    m("Sebastian", &["Basti"]), m("Matthias", &["Matze"]), f("Ursula", &["Uschi", "Ulla"]),
    f("Bärbel", &[]), m("Michael", &["Micha"]), f("Jülide", &[]), f("Margarete", &["Grete", "Gretel"]),
];

#[rustfmt::skip]
static FR_FIRST: &[FirstName] = &[
    m("Jean-Baptiste", &["JB", "Jean"]), m("François", &["Franck"]), m("Frédéric", &["Fred"]),
    m("Dominique", &["Dom"]), m("Nicolas", &["Nico"]), f("Stéphanie", &["Steph"]),
    m("Christophe", &["Chris"]), f("Hélène", &[]), f("Léa", &[]), f("Chloé", &[]), f("Zoë", &["Zoe"]),
    f("Amélie", &[]), f("Camille", &["Cam"]), m("Mathéo", &["Matt"]), m("Théo", &[]),
    f("Élodie", &["Élo"]), f("Céline", &[]), m("Benoît", &["Ben"]), m("Jérôme", &["Jé"]),
    m("Cédric", &[]), f("Gaëlle", &[]), f("Inès", &[]), f("Manon", &[]), m("Sébastien", &["Seb"]),
    m("Guillaume", &["Guigui"]), f("Valérie", &["Val"]), m("Pierre", &["Pierrot"]),
    f("Marie-Claire", &["Marie"]), f("Anaïs", &[]), m("Noël", &[]),
];

#[rustfmt::skip]
static GB_FIRST: &[FirstName] = &[
    m("William", &["Bill", "Will", "Billy", "Liam"]), f("Elizabeth", &["Liz", "Beth", "Lizzie", "Eliza"]),
    f("Margaret", &["Maggie", "Meg", "Peggy"]), m("Robert", &["Bob", "Rob", "Bobby"]),
    m("Richard", &["Rick", "Dick", "Rich"]), m("James", &["Jim", "Jimmy", "Jamie"]),
    f("Catherine", &["Cathy", "Kate", "Kat"]), m("Edward", &["Ed", "Ted", "Eddie"]),
    f("Charlotte", &["Charlie", "Lottie"]), m("Oliver", &["Ollie"]), m("Harry", &[]),
    m("George", &[]), f("Amelia", &["Millie", "Amy"]), f("Isla", &[]), m("Jack", &[]),
    m("Thomas", &["Tom", "Tommy"]), f("Emily", &["Em"]), f("Jessica", &["Jess"]),
    f("Victoria", &["Vicky", "Tori"]), m("Alistair", &["Ali"]), f("Siobhan", &[]),
    m("Nigel", &[]), f("Gemma", &[]), m("Callum", &["Cal"]), f("Philippa", &["Pippa"]),
    m("Archibald", &["Archie"]),
];

#[rustfmt::skip]
static US_FIRST: &[FirstName] = &[
    m("Christopher", &["Chris"]), f("Jennifer", &["Jen", "Jenny"]), m("Michael", &["Mike"]),
    m("Matthew", &["Matt"]), m("Joseph", &["Joe", "Joey"]), m("Anthony", &["Tony"]),
    f("Patricia", &["Pat", "Trish", "Patty"]), f("Rebecca", &["Becky", "Becca"]),
    f("Susan", &["Sue", "Suzy"]), m("Jonathan", &["Jon"]), m("Benjamin", &["Ben"]),
    m("Nicholas", &["Nick"]), m("Daniel", &["Dan", "Danny"]), f("Samantha", &["Sam"]),
    f("Ashley", &[]), f("Brittany", &[]), m("Tyler", &[]), f("Madison", &["Maddie"]),
    f("Kimberly", &["Kim"]), f("Deborah", &["Debbie", "Deb"]), m("Theodore", &["Ted", "Teddy", "Theo"]),
    m("Zachary", &["Zach"]), m("Andrew", &["Andy", "Drew"]), f("Stephanie", &["Steph"]),
    f("Abigail", &["Abby"]), f("Dorothy", &["Dot", "Dottie"]), m("DeShawn", &[]),
];

#[rustfmt::skip]
static ES_FIRST: &[FirstName] = &[
    m("José", &["Pepe"]), m("Francisco", &["Paco", "Fran"]), m("Enrique", &["Quique", "Kike"]),
    m("Manuel", &["Manolo", "Manu"]), f("Dolores", &["Lola"]), f("Guadalupe", &["Lupe"]),
    m("Ignacio", &["Nacho"]), m("Jesús", &["Chus", "Chuy"]), f("María José", &["Majo", "María"]),
    f("Concepción", &["Concha"]), m("Alejandro", &["Álex", "Alex"]), f("Lucía", &[]),
    f("Sofía", &[]), m("Álvaro", &[]), m("Íñigo", &[]), f("Begoña", &[]), f("Nuria", &[]),
    f("Rocío", &[]), f("Pilar", &["Pili"]), m("Antonio", &["Toño", "Toni"]), m("Ramón", &["Moncho"]),
    m("Ángel", &[]), m("Sergio", &[]), f("Raquel", &[]), m("Joaquín", &["Quino"]),
];

#[rustfmt::skip]
static IT_FIRST: &[FirstName] = &[
    m("Giuseppe", &["Beppe", "Peppe", "Pino"]), m("Francesco", &["Cesco", "Franco"]),
    m("Alessandro", &["Sandro", "Ale"]), m("Giovanni", &["Gianni", "Nanni"]),
    m("Roberto", &["Berto"]), m("Niccolò", &["Nicco"]), m("Andrea", &[]), m("Matteo", &["Teo"]),
    m("Lorenzo", &["Enzo"]), f("Federica", &["Fede"]), f("Giulia", &[]), f("Chiara", &[]),
    f("Beatrice", &["Bea"]), f("Elisabetta", &["Betta"]), m("Salvatore", &["Totò", "Salvo"]),
    m("Vincenzo", &["Enzo"]), m("Gabriele", &["Lele"]), m("Emanuele", &["Manu"]),
    f("Caterina", &["Cate", "Rina"]), f("Antonella", &["Anto"]), m("Raffaele", &["Lello"]),
    m("Daniele", &["Dani"]), m("Luca", &[]), f("Sara", &[]), m("Domenico", &["Mimmo"]),
    m("Gaetano", &["Tano"]),
];

#[rustfmt::skip]
static NL_FIRST: &[FirstName] = &[
    m("Johannes", &["Jan", "Hans", "Johan"]), m("Hendrik", &["Henk", "Rik"]),
    m("Willem", &["Wim", "Pim"]), m("Cornelis", &["Kees", "Cor"]), m("Jacobus", &["Koos", "Jaap"]),
    f("Geertruida", &["Truus"]), f("Wilhelmina", &["Mien", "Willy"]), m("Pieter", &["Piet"]),
    m("Gerrit", &[]), m("Daan", &[]), f("Sanne", &[]), f("Femke", &[]), f("Anouk", &[]),
    m("Maarten", &[]), m("Joost", &[]), m("Bram", &[]), f("Lotte", &[]), f("Floor", &[]),
    m("Sem", &[]), f("Noor", &[]), m("Thijs", &[]), m("Ruud", &[]), f("Marijke", &["Mieke"]),
    f("Anneke", &[]), f("Eline", &[]),
];

#[rustfmt::skip]
static DE_LAST: &[&str] = &[
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
    "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
    "Schwarz", "Zimmermann", "Braun", "Krüger", "Hartmann", "Lange", "Krause", "Lehmann",
    "Köhler", "Weiß", "Groß", "Jäger", "Böhm", "von Bülow",
];
#[rustfmt::skip]
static FR_LAST: &[&str] = &[
    "Martin", "Bernard", "Dubois", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
    "Simon", "Laurent", "Lefèvre", "Michel", "David", "Bertrand", "Roux", "Vincent", "Fournier",
    "Morel", "Girard", "André", "Mercier", "Dupont", "Lambert", "Bonnet", "Guérin", "Hébert",
    "Côté", "Gauthier", "Lemaître", "Châtelain", "de la Tour",
];
#[rustfmt::skip]
static GB_LAST: &[&str] = &[
    "Evans", "Davies", "Wright", "Roberts", "Hughes", "Edwards", "Green", "Hall", "Wood",
    "Harrison", "Clarke", "Turner", "Hill", "Cooper", "Ward", "Morris", "Ashworth", "Baker",
    "Holmes", "Price", "Murphy", "Kelly", "Patel", "Khan", "Mitchell", "Fletcher", "Whitaker",
    "Fitzgerald", "Smith-Jones", "St. John", "MacLeod",
];
#[rustfmt::skip]
static US_LAST: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Rodriguez",
    "Hernandez", "Wilson", "Anderson", "Taylor", "Moore", "Jackson", "Lee", "Thompson", "White",
    "Harris", "Clark", "Lewis", "Robinson", "Walker", "O'Brien", "O'Connor", "McDonald", "Nguyen",
    "Kowalski", "Washington", "Carter", "Reyes",
];
#[rustfmt::skip]
static ES_LAST: &[&str] = &[
    "García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez",
    "Gómez", "Martín", "Jiménez", "Ruiz", "Díaz", "Moreno", "Muñoz", "Álvarez", "Romero",
    "Alonso", "Gutiérrez", "Navarro", "Torres", "Domínguez", "Vázquez", "Ramos", "Núñez", "Peña",
    "Iglesias", "de la Fuente", "del Río",
];
#[rustfmt::skip]
static IT_LAST: &[&str] = &[
    "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino",
    "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Costa", "Giordano", "Rizzo",
    "Lombardi", "Moretti", "Barbieri", "Fontana", "Santoro", "Mariani", "Rinaldi", "Caruso",
    "D'Angelo", "D'Amico", "Lucà",
];
#[rustfmt::skip]
static NL_LAST: &[&str] = &[
    "de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen", "Visser",
    "Smit", "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks",
    "van Leeuwen", "Dekker", "Brouwer", "de Wit", "Dijkstra", "Smits", "de Graaf",
    "van der Meer", "van der Linden", "Kok", "IJzerman",
];

/// Given names typical for a country.
pub fn first_names(c: Country) -> &'static [FirstName] {
    match c {
        Country::De => DE_FIRST,
        Country::Fr => FR_FIRST,
        Country::Gb => GB_FIRST,
        Country::Us => US_FIRST,
        Country::Es => ES_FIRST,
        Country::It => IT_FIRST,
        Country::Nl => NL_FIRST,
    }
}

/// Family names typical for a country.
pub fn last_names(c: Country) -> &'static [&'static str] {
    match c {
        Country::De => DE_LAST,
        Country::Fr => FR_LAST,
        Country::Gb => GB_LAST,
        Country::Us => US_LAST,
        Country::Es => ES_LAST,
        Country::It => IT_LAST,
        Country::Nl => NL_LAST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn pools_are_large_and_distinct_enough() {
        let mut firsts = HashSet::new();
        let mut lasts = HashSet::new();
        for c in Country::ALL {
            assert!(!first_names(c).is_empty() && !last_names(c).is_empty());
            firsts.extend(first_names(c).iter().map(|n| n.name));
            lasts.extend(last_names(c).iter().copied());
        }
        assert!(firsts.len() >= 150, "only {} first names", firsts.len());
        assert!(lasts.len() >= 150, "only {} last names", lasts.len());
    }
}
