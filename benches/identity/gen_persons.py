#!/usr/bin/env python3
"""Synthetic person records with known duplicates, for probabilistic-matching benchmarks.

    python benches/identity/gen_persons.py --records 1000000 --out /tmp/idbench/persons_1m.parquet

Writes `<out>` with one row per record
    (record_id int64, first_name, surname, dob, email, phone, address, city, postcode)  all text
and `<stem>.truth.parquet` with (record_id, person_id). Deterministic for a given --seed.

Population: records / 1.667 persons (600k for 1M records); each person has 1 + Poisson(2/3)
records. A person's first record is close to clean; the others carry what CDP sources do:
  first_name  nicknames (William -> Bill, Katherine -> Kate, ...) 12 %, typos 3 %, initial
              only 1 %, first/last swapped 1 %, missing 2 %
  surname     typos 3 %, changed at marriage 4 % of women's records, double-barrelled 1 %,
              missing 1 %
  dob         ISO yyyy-mm-dd; day/month swapped 2 %, one digit off 2 %, 1st of January
              placeholder 1 %, missing 4 %
  email       unique per person (common-name addresses get a number), another address 15 %, typo 2 %, upper case 5 %, missing 12 %
  phone       formats "07700 900123" / "07700900123" / "+44 7700 900123" / "(07700) 900 123"
              at random, another number 10 %, one digit off 2 %, missing 15 %
  address     moved (new address, city, postcode) 12 %, Street/St Road/Rd ... abbreviated or
              expanded 20 %, typo 3 %, missing 3 %
  city        typo 2 %, upper case 5 %, missing 2 %;  postcode  space dropped 20 %, lower case
              5 %, one character off 2 %, missing 3 %
Case varies too (upper / lower case names, addresses, emails), as different sources write them.
Names follow Zipf-like frequencies (common names are shared by many different people), and
~40 people share an average postcode, so blocking and u-estimation see realistic collisions.
"""

import argparse
import datetime
import os
import random
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MALE = {
    "James": ["Jim", "Jimmy", "Jamie"], "John": ["Johnny", "Jack"], "Robert": ["Bob", "Rob", "Bobby"],
    "Michael": ["Mike", "Mick"], "William": ["Bill", "Will", "Billy"], "David": ["Dave", "Davy"],
    "Richard": ["Rick", "Dick", "Rich"], "Joseph": ["Joe", "Joey"], "Thomas": ["Tom", "Tommy"],
    "Charles": ["Charlie", "Chuck"], "Christopher": ["Chris", "Kit"], "Daniel": ["Dan", "Danny"],
    "Matthew": ["Matt"], "Anthony": ["Tony"], "Mark": [], "Donald": ["Don"], "Steven": ["Steve"],
    "Paul": [], "Andrew": ["Andy", "Drew"], "Joshua": ["Josh"], "Kenneth": ["Ken", "Kenny"],
    "Kevin": ["Kev"], "Brian": [], "George": [], "Timothy": ["Tim"], "Ronald": ["Ron", "Ronnie"],
    "Edward": ["Ed", "Eddie", "Ted"], "Jason": [], "Jeffrey": ["Jeff"], "Ryan": [], "Jacob": ["Jake"],
    "Gary": [], "Nicholas": ["Nick"], "Eric": [], "Jonathan": ["Jon"], "Stephen": ["Steve"],
    "Larry": [], "Justin": [], "Scott": [], "Brandon": [], "Benjamin": ["Ben", "Benny"],
    "Samuel": ["Sam"], "Gregory": ["Greg"], "Alexander": ["Alex", "Sandy"], "Patrick": ["Pat"],
    "Frank": [], "Raymond": ["Ray"], "Jack": [], "Dennis": [], "Jerry": [], "Tyler": [],
    "Aaron": [], "Jose": [], "Adam": [], "Nathan": ["Nate"], "Henry": ["Harry", "Hank"],
    "Peter": ["Pete"], "Zachary": ["Zach"], "Douglas": ["Doug"], "Harold": ["Hal"], "Oliver": ["Ollie"],
    "Noah": [], "Liam": [], "Ethan": [], "Lucas": ["Luke"], "Mohammed": ["Mohamed", "Muhammad"],
    "Ahmed": [], "Ali": [], "Luca": [], "Marco": [], "Pierre": [], "Jan": [], "Lars": [],
    "Sebastian": ["Seb"], "Theodore": ["Theo", "Ted"], "Frederick": ["Fred", "Freddie"],
    "Arthur": ["Art"], "Leonard": ["Leo", "Len"], "Vincent": ["Vince"], "Philip": ["Phil"],
    "Gerald": ["Gerry"], "Lawrence": ["Larry"], "Nigel": [], "Graham": [], "Ian": [], "Colin": [],
    "Stuart": ["Stu"], "Martin": ["Marty"], "Simon": [], "Neil": [], "Keith": [], "Trevor": [],
}
FEMALE = {
    "Mary": ["Molly", "Polly"], "Patricia": ["Pat", "Patty", "Trish"], "Jennifer": ["Jen", "Jenny"],
    "Linda": [], "Elizabeth": ["Liz", "Beth", "Betty", "Lizzie"], "Barbara": ["Barb"],
    "Susan": ["Sue", "Susie"], "Jessica": ["Jess"], "Sarah": ["Sally"], "Karen": [],
    "Nancy": [], "Lisa": [], "Margaret": ["Maggie", "Meg", "Peggy"], "Sandra": ["Sandy"],
    "Ashley": [], "Kimberly": ["Kim"], "Emily": ["Em"], "Donna": [], "Michelle": ["Shelly"],
    "Dorothy": ["Dot", "Dottie"], "Carol": [], "Amanda": ["Mandy"], "Melissa": ["Mel", "Missy"],
    "Deborah": ["Debbie", "Deb"], "Stephanie": ["Steph"], "Rebecca": ["Becky", "Becca"],
    "Laura": [], "Sharon": [], "Cynthia": ["Cindy"], "Kathleen": ["Kathy", "Kate"],
    "Amy": [], "Shirley": [], "Angela": ["Angie"], "Helen": [], "Anna": ["Ann", "Annie"],
    "Brenda": [], "Pamela": ["Pam"], "Nicole": ["Nikki"], "Samantha": ["Sam", "Sammy"],
    "Katherine": ["Kate", "Katie", "Kathy", "Kat"], "Christine": ["Chris", "Chrissy"],
    "Debra": ["Deb"], "Rachel": [], "Catherine": ["Cathy", "Kate"], "Carolyn": ["Carrie"],
    "Janet": ["Jan"], "Ruth": [], "Maria": [], "Heather": [], "Diane": [], "Virginia": ["Ginny"],
    "Julie": [], "Joyce": [], "Victoria": ["Vicky", "Tori"], "Olivia": ["Liv"], "Kelly": [],
    "Christina": ["Tina"], "Lauren": [], "Joan": [], "Evelyn": ["Evie"], "Judith": ["Judy"],
    "Megan": ["Meg"], "Cheryl": [], "Andrea": [], "Hannah": [], "Jacqueline": ["Jackie"],
    "Martha": ["Marty"], "Gloria": [], "Teresa": ["Terri", "Tess"], "Sara": [], "Janice": [],
    "Abigail": ["Abby"], "Sophie": [], "Charlotte": ["Lottie", "Charlie"], "Amelia": ["Millie"],
    "Isabella": ["Bella", "Izzy"], "Fatima": [], "Aisha": [], "Giulia": [], "Chloe": [],
    "Marie": [], "Ingrid": [], "Alexandra": ["Alex", "Sasha"], "Frances": ["Fran", "Frankie"],
    "Gillian": ["Jill", "Gill"], "Eleanor": ["Ellie", "Nell"], "Susannah": ["Sue"],
}
SURNAMES = """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez
Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green
Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Evans Turner Phillips Parker Edwards
Collins Stewart Morris Murphy Cook Rogers Morgan Peterson Cooper Reed Bailey Bell Gomez Kelly Howard
Ward Cox Diaz Richardson Wood Watson Brooks Bennett Gray James Reyes Cruz Hughes Price Myers Long
Foster Sanders Ross Morales Powell Sullivan Russell Ortiz Jenkins Gutierrez Perry Butler Barnes
Fisher Henderson Coleman Simmons Patterson Jordan Reynolds Hamilton Graham Kim Gonzales Alexander
Ramos Wallace Griffin West Cole Hayes Chavez Gibson Bryant Ellis Stevens Murray Ford Marshall Owens
McDonald Harrison Ruiz Kennedy Wells Alvarez Woods Mendoza Castillo Olson Webb Washington Tucker
Freeman Burns Henry Vasquez Snyder Simpson Crawford Jimenez Porter Mason Shaw Gordon Wagner Hunter
Romero Hicks Dixon Hunt Palmer Robertson Black Holmes Stone Meyer Boyd Mills Warren Fox Rose Rice
Moreno Schmidt Patel Ferguson Nichols Herrera Medina Ryan Fernandez Weaver Daniels Stephens Gardner
Payne Kelley Dunn Pierce Arnold Tran Spencer Peters Hawkins Grant Hansen Castro Hoffman Hart Elliott
Cunningham Knight Bradley Carroll Hudson Duncan Armstrong Berry Andrews Johnston Ray Lane Riley
Carpenter Perkins Aguilar Silva Richards Willis Matthews Chapman Lawrence Garza Vargas Watkins Wheeler
Larson Carlson Harper George Greene Burke Guzman Morrison Munoz Jacobs Obrien Lawson Franklin Lynch
Bishop Carr Salazar Austin Mendez Gilbert Jensen Williamson Montgomery Harvey Oliver Howell Dean
Hanson Weber Garrett Sims Burton Fuller Soto McCoy Welch Chen Schultz Walters Reid Fields Walsh
Little Fowler Bowman Davidson May Day Schneider Newman Brewer Lucas Holland Wong Banks Santos Curtis
Pearson Delgado Valdez Pena Rios Douglas Sandoval Barrett Hopkins Keller Guerrero Stanley Bates
Alvarado Beck Ortega Wade Estrada Contreras Barnett Caldwell Santiago Lambert Powers Chambers Nunez
Craig Leonard Lowe Rhodes Byrd Gregory Shelton Frazier Becker Maldonado Fleming Vega Sutton Cohen
Jennings Parks McDaniel Watts Barker Norris Vaughn Vazquez Holt Schwartz Steele Benson Neal Dominguez
Horton Terry Wolfe Hale Lyons Graves Haynes Miles Park Warner Padilla Bush Thornton McCarthy Mann
Zimmerman Erickson Fletcher McKinney Page Dawson Joseph Marquez Reeves Klein Espinoza Baldwin Moran
Love Robbins Higgins Ball Cortez Le Griffith Bowen Sharp Cummings Ramsey Hardy Swanson Barber Acosta
Luna Chandler Blair Daniel Cross Simon Dennis OConnor Quinn Gross Navarro Moss Fitzgerald Doyle
McLaughlin Rojas Rodgers Stevenson Singh Yang Figueroa Harmon Newton Paul Manning Garner McGee Reese
Francis Burgess Adkins Goodman Curry Brady Christensen Potter Walton Goodwin Mullins Molina Webster
Fischer Campos Avila Sherman Todd Chang Blake Malone Wolf Hodges Juarez Gill Farmer Hines Gallagher
Duran Hubbard Cannon Miranda Wang Saunders Tate Mack Hammond Carrillo Townsend Wise Ingram Barton
Mejia Ayala Schroeder Hampton Rowe Parsons Frank Waters Strickland Osborne Maxwell Chan Deleon Norman
Harrington Casey Patton Logan Bowers Mueller Glover Floyd Hartman Buchanan Cobb French Kramer McCormick
Clarke Tyler Gibbs Moody Conner Sparks McGuire Leon Bauer Norton Pope Flynn Hogan Robles Salinas
Yates Lindsey Lloyd Marsh McBride Owen Solis Pham Lang Pratt Lara Brock Ballard Trujillo Shaffer
Drake Roman Aguirre Morton Stokes Lamb Pacheco Patrick Cochran Shepherd Cain Burnett Hess Li Cervantes
Olsen Briggs Ochoa Cabrera Velasquez Montoya Roth Meyers Cardenas Fuentes Weiss Wilkins Hoover
Nicholson Underwood Short Carson Morrow Colon Holloway Summers Bryan Petersen McKenzie Serrano Wilcox
Carey Clayton Poole Calderon Gallegos Greer Rivas Guerra Decker Collier Wall Whitaker Bass Flowers
Davenport Conley Houston Huff Copeland Hood Monroe Massey Roberson Combs Franco Larsen Pittman Randall
Skinner Wilkinson Kirby Cameron Bridges Anthony Richard Kirk Bruce Singleton Mathis Bradford Boone
Abbott Charles Allison Sweeney Atkinson Horn Jefferson Rosales York Christian Phelps Farrell
Castaneda Nash Dickerson Bond Wyatt Foley Chase Gates Vincent Mathews Hodge Garrison Trevino Villarreal
Heath Dalton Valencia Callahan Hensley Atkins Huffman Roy Boyer Shields Lin Hancock Grimes Glenn Cline
Delacruz Camacho Dillon Parrish Oneill Melton Booth Kane Berg Harrell Pitts Savage Wiggins Brennan
Salas Marks Russo Sawyer Baxter Golden Hutchinson Liu Walter McDowell Wiley Rich Humphrey Johns Koch
Suarez Hobbs Beard Gilmore Ibarra Keith Macias Khan Andrade Ware Stephenson Henson Wilkerson Dyer
McClure Blackwell Mercado Tanner Eaton Clay Barron Beasley Oneal Preston Small Wu Zamora Macdonald
Vance Snow McClain Stafford Orozco Barry English Shannon Kline Jacobson Woodard Huang Kemp Mosley
Prince Merritt Hurst Villanueva Roach Nolan Lam Yoder McCullough Lester Santana Valenzuela Winters
Barrera Leach Orr Berger McKee Strong Conway Stein Whitehead Bullock Escobar Knox Meadows Solomon
Velez Odonnell Kerr Stout Blankenship Browning Kent Lozano Bartlett Pruitt Buck Barr Gaines Durham
Gentry McIntyre Sloan Melendez Rocha Herman Sexton Moon Hendricks Rangel Stark Lowery Hardin Hull
Sellers Ellison Calhoun Gillespie Mora Knapp McCall Morse Dorsey Weeks Nielsen Livingston Leblanc
McLean Bradshaw Glass Middleton Buckley Schaefer Frost Howe House McIntosh Ho Pennington Reilly Hebert
McFarland Hickman Noble Spears Conrad Arias Galvan Velazquez Huynh Frederick Randolph Cantu Fitzpatrick
Mahoney Peck Villa Michael Donovan McConnell Walls Boyle Mayer Zuniga Giles Pineda Pace Hurley Mays
McMillan Crosby Ayers Case Bentley Shepard Everett Pugh David McMahon Dunlap Bender Hahn Harding Acevedo
Raymond Blackburn Duffy Landry Dougherty Bautista Shah Potts Arroyo Valentine Meza Gould Vaughan Fry
Rush Avery Herring Dodson Clements Sampson Tapia Bean Lynn Crane Farley Cisneros Benton Ashley Mckay
Finley Best Blevins Friedman Moses Sosa Blanchard Huber Frye Krueger Bernard Rosario Rubio Mullen
Benjamin Haley Chung Moyer Choi Horne Yu Woodward Ali Nixon Hayden Rivers Estes Mccarty Richmond
Stuart Maynard Brandt Oconnell Hanna Sanford Sheppard Church Burch Levy Rasmussen Coffey Ponce Faulkner
Donaldson Schmitt Novak Costa Montes Booker Cordova Waller Arellano Maddox Mata Bonilla Stanton
Compton Kaufman Dudley McPherson Beltran Dickson McCann Villegas Proctor Hester Cantrell Daugherty
Cherry Bray Davila Rowland Levine Madden Spence Good Irwin Werner Krause Petty Whitney Baird Hooper
Pollard Zavala Jarvis Holden Haas Hendrix McGrath Bird Lucero Terrell Riggs Joyce Mercer Rollins
Galloway Duke Odom Andersen Downs Hatfield Benitez Archer Huerta Travis McNeil Hinton Zhang Hays Mayo
Fritz Branch Mooney Ewing Ritter Esparza Frey Braun Gay Riddle Haney Kaiser Holder Chaney McKnight
Gamble Vang Cooley Carney Cowan Forbes Ferrell Davies Barajas Shea Osborn Bright Cuevas Bolton Murillo
Lutz Duarte Kidd Key Cooke""".split()
SYL_A = "Ash Black Bright Brook Cal Clay Cran Dal Fair Fox Gold Green Hart Hol Kings Lang Mar Mill " \
        "Moor North Pen Red Rock Ross Stan Stone Thorn War West Whit Wood Har Ald Brad Chal Dun Elm " \
        "Fern Glen Hay Ing Kel Lind Mel Nor Oak Pem Rad Sel Tal Ux Wes Yar".split()
SYL_B = "by ford ham ley ton well wood worth field man er son more stead wick bridge combe dale hurst " \
        "land ridge shaw cott low brook ing ston thwaite".split()
STREETS = """High Station Main Park Church London Victoria Green Manor Kings Queens Grange Mill Albert
New School North South West East Chapel York Windsor Richmond Alexandra Springfield Highfield Stanley
Oak Elm Cedar Willow Maple Ash Beech Birch Holly Hawthorn Rose Meadow Orchard Garden Chestnut Hill
Bridge Castle Abbey Priory Market Water Forest Lime Cherry George Princes Charles Nelson Wellington
Cromwell Marlborough Balmoral Clarence Grosvenor Kingsway Broad Long Mount Grove Lake River Brook
Cambridge Oxford Bath Dover Essex Kent Sussex Devon Somerset Norfolk Chester Lancaster Stafford Warwick
Milton Shakespeare Tennyson Byron Darwin Newton Nightingale Churchill Cavendish Fairfield Woodland
Heather Primrose Lavender Ivy Fern Bluebell Daisy Poppy Sycamore Poplar Rowan Hazel Laurel Juniper""".split()
SUFFIX = [("Street", "St"), ("Road", "Rd"), ("Avenue", "Ave"), ("Lane", "Ln"), ("Drive", "Dr"),
          ("Close", "Cl"), ("Court", "Ct"), ("Crescent", "Cres"), ("Place", "Pl"), ("Gardens", "Gdns"),
          ("Terrace", "Ter"), ("Way", "Way"), ("Grove", "Gr"), ("Square", "Sq")]
# (city, postcode areas, weight ~ population)
CITIES = [("London", ["E", "N", "NW", "SE", "SW", "W", "EC", "WC"], 90), ("Birmingham", ["B"], 12),
          ("Manchester", ["M"], 10), ("Leeds", ["LS"], 8), ("Glasgow", ["G"], 7), ("Liverpool", ["L"], 6),
          ("Sheffield", ["S"], 6), ("Bristol", ["BS"], 5), ("Edinburgh", ["EH"], 5), ("Leicester", ["LE"], 4),
          ("Coventry", ["CV"], 4), ("Bradford", ["BD"], 4), ("Cardiff", ["CF"], 4), ("Belfast", ["BT"], 4),
          ("Nottingham", ["NG"], 4), ("Newcastle upon Tyne", ["NE"], 4), ("Southampton", ["SO"], 3),
          ("Brighton", ["BN"], 3), ("Plymouth", ["PL"], 3), ("Reading", ["RG"], 3), ("Derby", ["DE"], 3),
          ("Wolverhampton", ["WV"], 3), ("Stoke-on-Trent", ["ST"], 3), ("Norwich", ["NR"], 2),
          ("Aberdeen", ["AB"], 2), ("Swansea", ["SA"], 2), ("Milton Keynes", ["MK"], 2), ("York", ["YO"], 2),
          ("Oxford", ["OX"], 2), ("Cambridge", ["CB"], 2), ("Exeter", ["EX"], 2), ("Dundee", ["DD"], 1),
          ("Bath", ["BA"], 1), ("Chester", ["CH"], 1), ("Lincoln", ["LN"], 1), ("Ipswich", ["IP"], 1),
          ("Luton", ["LU"], 1), ("Peterborough", ["PE"], 1), ("Swindon", ["SN"], 1), ("Watford", ["WD"], 1),
          ("Preston", ["PR"], 1), ("Blackpool", ["FY"], 1), ("Hull", ["HU"], 1), ("Sunderland", ["SR"], 1),
          ("Middlesbrough", ["TS"], 1), ("Wigan", ["WN"], 1), ("Bolton", ["BL"], 1), ("Huddersfield", ["HD"], 1),
          ("Colchester", ["CO"], 1), ("Canterbury", ["CT"], 1), ("Guildford", ["GU"], 1), ("Slough", ["SL"], 1)]
DOMAINS = [("gmail.com", 40), ("hotmail.co.uk", 12), ("yahoo.co.uk", 8), ("outlook.com", 10), ("icloud.com", 6),
           ("btinternet.com", 5), ("hotmail.com", 6), ("live.co.uk", 4), ("aol.com", 2), ("sky.com", 3),
           ("virginmedia.com", 2), ("protonmail.com", 1), ("mail.com", 1)]
PC_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
KEYB = "qwertyuiopasdfghjklzxcvbnm"


def zipf_weights(n, s=1.0):
    return 1.0 / np.arange(1, n + 1) ** s


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.np = np.random.default_rng(seed)
        surn = list(dict.fromkeys(SURNAMES + [a + b for a in SYL_A for b in SYL_B]))
        self.surnames = surn
        self.surname_w = list(np.cumsum(zipf_weights(len(surn), 0.9)))
        self.male = list(MALE)
        self.female = list(FEMALE)
        self.male_w = list(np.cumsum(zipf_weights(len(self.male), 0.8)))
        self.female_w = list(np.cumsum(zipf_weights(len(self.female), 0.8)))
        self.nick = {**MALE, **FEMALE}
        self.city_w = list(np.cumsum([c[2] for c in CITIES]))
        self.dom = [d[0] for d in DOMAINS]
        self.dom_w = list(np.cumsum([d[1] for d in DOMAINS]))
        self.street_w = list(np.cumsum(zipf_weights(len(STREETS), 0.5)))
        self.used_emails = set()
        self.used_phones = set()

    # -- person-level values -------------------------------------------------------------
    def surname(self):
        return self.r.choices(self.surnames, cum_weights=self.surname_w)[0]

    def place(self):
        r = self.r
        ci = r.choices(range(len(CITIES)), cum_weights=self.city_w)[0]
        city, areas, weight = CITIES[ci]
        # Postcode districts and sectors per city scale with its weight: ~40 people a postcode.
        area = r.choice(areas)
        district = r.randint(1, max(2, min(99, 3 * weight // len(areas) + 2)))
        postcode = f"{area}{district} {r.randint(0, 9)}{r.choice(PC_LETTERS)}{r.choice(PC_LETTERS)}"
        street = r.choices(STREETS, cum_weights=self.street_w)[0]
        suffix = r.randrange(len(SUFFIX))
        number = int(self.np.zipf(1.6)) if r.random() < 0.5 else r.randint(1, 250)
        flat = f"Flat {r.randint(1, 30)}, " if r.random() < 0.12 else ""
        return {"number": f"{flat}{min(number, 999)}", "street": street, "suffix": suffix,
                "city": city, "postcode": postcode}

    def email(self, first, last, dob):
        r = self.r
        f, l = first.lower(), last.lower().replace(" ", "").replace("-", "")
        style = r.random()
        if style < 0.3:
            local = f"{f}.{l}"
        elif style < 0.5:
            local = f"{f[0]}{l}"
        elif style < 0.65:
            local = f"{f}{l}{dob[2:4]}"
        elif style < 0.8:
            local = f"{f}.{l}{r.randint(1, 99)}"
        elif style < 0.9:
            local = f"{f}_{l[:3]}{r.randint(100, 9999)}"
        else:
            local = f"{l}{f[0]}{r.randint(1, 999)}"
        domain = r.choices(self.dom, cum_weights=self.dom_w)[0]
        addr = f"{local}@{domain}"
        while addr in self.used_emails:  # a mailbox belongs to one person: disambiguate
            addr = f"{local}{r.randint(1, 9999)}@{domain}"
        self.used_emails.add(addr)
        return addr

    def phone(self):
        while True:  # one number, one person
            p = f"07{self.r.randint(100, 999)}{self.r.randint(100000, 999999)}"
            if p not in self.used_phones:
                self.used_phones.add(p)
                return p

    def person(self):
        r = self.r
        female = r.random() < 0.51
        first = (r.choices(self.female, cum_weights=self.female_w) if female
                 else r.choices(self.male, cum_weights=self.male_w))[0]
        last = self.surname()
        y, m, d = r.randint(1935, 2006), r.randint(1, 12), r.randint(1, 28)
        dob = f"{y:04d}-{m:02d}-{d:02d}"
        return {"female": female, "first": first, "last": last, "dob": dob,
                "email": self.email(first, last, dob), "phone": self.phone(), "place": self.place()}

    # -- record-level corruption -----------------------------------------------------------
    def typo(self, s):
        if not s:
            return s
        r = self.r
        i = r.randrange(len(s))
        op = r.random()
        if op < 0.3:
            return s[:i] + r.choice(KEYB) + s[i + 1:]        # substitution
        if op < 0.55 and len(s) > 2:
            return s[:i] + s[i + 1:]                         # deletion
        if op < 0.8 and i < len(s) - 1:
            return s[:i] + s[i + 1] + s[i] + s[i + 2:]       # transposition
        return s[:i] + r.choice(KEYB) + s[i:]                # insertion

    def digit_off(self, s):
        pos = [i for i, c in enumerate(s) if c.isdigit()]
        if not pos:
            return s
        i = self.r.choice(pos)
        return s[:i] + str((int(s[i]) + self.r.randint(1, 9)) % 10) + s[i + 1:]

    def fmt_phone(self, p):
        k = self.r.random()
        if k < 0.3:
            return f"{p[:5]} {p[5:]}"
        if k < 0.55:
            return p
        if k < 0.8:
            return f"+44 {p[1:5]} {p[5:]}"
        return f"({p[:5]}) {p[5:8]} {p[8:]}"

    def record(self, P, clean):
        r = self.r
        q = 0.25 if clean else 1.0  # the first record of a person is mostly clean
        first, last, dob = P["first"], P["last"], P["dob"]
        email, phone, place = P["email"], P["phone"], P["place"]
        # names
        if r.random() < 0.12 * q and self.nick.get(first):
            first = r.choice(self.nick[first])
        if r.random() < 0.04 * q and P["female"]:
            last = self.surname()
        elif r.random() < 0.01 * q:
            last = f"{last}-{self.surname()}"
        if r.random() < 0.03 * q:
            first = self.typo(first)
        if r.random() < 0.03 * q:
            last = self.typo(last)
        if r.random() < 0.01 * q:
            first = first[0] + "."
        if r.random() < 0.01 * q:
            first, last = last, first
        case = r.random()
        if case < 0.05:
            first, last = first.upper(), last.upper()
        elif case < 0.10:
            first, last = first.lower(), last.lower()
        # dob
        y, m, d = dob.split("-")
        k = r.random()
        if k < 0.02 * q and int(d) <= 12:
            dob = f"{y}-{d}-{m}"
        elif k < 0.04 * q:
            dob = self.digit_off(dob)
            try:
                datetime.date.fromisoformat(dob)
            except ValueError:
                dob = P["dob"]
        elif k < 0.05 * q:
            dob = f"{y}-01-01"
        # email
        if r.random() < 0.15 * q:
            email = self.email(P["first"], last, P["dob"])
        if r.random() < 0.02 * q:
            at = email.index("@")
            email = self.typo(email[:at]) + email[at:]
        if r.random() < 0.05:
            email = email.upper()
        # phone
        if r.random() < 0.10 * q:
            phone = self.phone()
        if r.random() < 0.02 * q:
            phone = phone[:2] + self.digit_off(phone[2:])
        phone = self.fmt_phone(phone)
        # address
        if r.random() < 0.12 * q:
            place = self.place()
        long_s, short_s = SUFFIX[place["suffix"]]
        suffix = short_s if r.random() < (0.2 if clean else 0.35) else long_s
        address = f"{place['number']} {place['street']} {suffix}"
        if r.random() < 0.03 * q:
            address = self.typo(address)
        city, postcode = place["city"], place["postcode"]
        if r.random() < 0.02 * q:
            city = self.typo(city)
        if r.random() < 0.05:
            city = city.upper()
        if r.random() < 0.2:
            postcode = postcode.replace(" ", "")
        if r.random() < 0.05:
            postcode = postcode.lower()
        if r.random() < 0.02 * q:
            postcode = self.typo(postcode).upper()
        if r.random() < 0.2:
            address = address.upper() if r.random() < 0.5 else address.lower()
        rec = {"first_name": first, "surname": last, "dob": dob, "email": email, "phone": phone,
               "address": address, "city": city, "postcode": postcode}
        for f, p in (("first_name", 0.02), ("surname", 0.01), ("dob", 0.04), ("email", 0.12),
                     ("phone", 0.15), ("address", 0.03), ("city", 0.02), ("postcode", 0.03)):
            if r.random() < p * (0.5 if clean else 1.0):
                rec[f] = None
        return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="persons.parquet")
    args = ap.parse_args()
    t0 = time.perf_counter()
    g = Gen(args.seed)
    n = args.records
    n_persons = max(1, round(n / (5 / 3)))
    per = 1 + g.np.poisson(2 / 3, n_persons)
    # trim / pad to exactly n records
    excess = int(per.sum()) - n
    while excess > 0:
        idx = np.flatnonzero(per > 1)
        take = g.np.choice(idx, size=min(excess, len(idx)), replace=False)
        per[take] -= 1
        excess = int(per.sum()) - n
    if excess < 0:
        add = g.np.choice(n_persons, size=-excess, replace=True)
        np.add.at(per, add, 1)

    cols = {k: [] for k in ["first_name", "surname", "dob", "email", "phone", "address", "city", "postcode"]}
    person_ids = np.repeat(np.arange(n_persons, dtype=np.int64), per)
    for pid in range(n_persons):
        P = g.person()
        for j in range(per[pid]):
            rec = g.record(P, clean=(j == 0))
            for k, v in rec.items():
                cols[k].append(v)
        if pid % 100_000 == 0 and pid:
            print(f"[{time.perf_counter() - t0:6.1f}s] {pid:,} persons", file=sys.stderr, flush=True)
    # shuffle record order so duplicates are not adjacent
    order = g.np.permutation(n)
    table = pa.table({"record_id": pa.array(np.arange(n, dtype=np.int64)),
                      **{k: pa.array(v, pa.string()).take(pa.array(order)) for k, v in cols.items()}})
    truth = pa.table({"record_id": pa.array(np.arange(n, dtype=np.int64)),
                      "person_id": pa.array(person_ids[order])})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    pq.write_table(table, args.out)
    stem = args.out[:-8] if args.out.endswith(".parquet") else args.out
    pq.write_table(truth, stem + ".truth.parquet")
    sizes = np.bincount(per)
    true_pairs = int((per * (per - 1) // 2).sum())
    print(f"[{time.perf_counter() - t0:6.1f}s] wrote {args.out}: {n:,} records, {n_persons:,} persons, "
          f"{true_pairs:,} true pairs; records per person {dict(enumerate(sizes.tolist()))}", file=sys.stderr)


if __name__ == "__main__":
    main()
