"""Phrase banks and the caption writer of the artwork simulator (:mod:`recbench.data.artwork_sim`).

A caption describes one artwork of a title as a visual scene, in the style of a vision-language
model's caption (the paper's ~200-token captions). It emphasizes one *facet* of the title (a
genre, a tone, a setting, a relationship or an era) through scene sentences drawn from that
facet's bank. No sentence names a genre: a reader has to know that a ringed planet suggests
science fiction, not match the word "Sci-Fi". Every artwork of a title shares distractor details
(composition, palette, lettering, finish) that carry no preference signal.
"""

from __future__ import annotations

import random

GENRE_FACETS = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
TONE_FACETS = ("tone:dark", "tone:lighthearted", "tone:tender", "tone:suspenseful", "tone:epic", "tone:melancholic")
SETTING_FACETS = ("setting:city", "setting:wilderness", "setting:space", "setting:sea", "setting:small-town", "setting:abroad")
RELATION_FACETS = ("bond:family", "bond:couple", "bond:friends", "bond:rivals", "bond:loner", "bond:team")
ERA_FACETS = ("era:period", "era:modern")
FACETS = GENRE_FACETS + TONE_FACETS + SETTING_FACETS + RELATION_FACETS + ERA_FACETS

PEOPLE = (
    "a young woman in a rain-soaked coat", "a grey-haired man with a lined face", "a teenage boy in a frayed hoodie",
    "a woman in a leather flight jacket", "a broad-shouldered man in shirtsleeves", "a girl of about ten with braids",
    "an elderly woman in a knitted shawl", "a lanky young man with a crooked grin", "a woman with close-cropped silver hair",
    "a bearded man in a heavy wool coat", "a freckled redhead in overalls", "a tall woman in a tailored suit",
    "a boy with scraped knees", "a wiry man with a shaved head", "a young mother with her sleeves rolled up",
    "a stooped old man leaning on a cane", "a woman in a sequined evening dress", "a soft-spoken man in round glasses",
)  # fmt: skip

# {who} and {who2} are filled from PEOPLE; every facet has its own bank of scene sentences
SCENES: dict[str, tuple[str, ...]] = {
    "Action": (
        "{who} leaps between two rooftops as an explosion blooms behind them.",
        "A motorcycle skids sideways through a shower of sparks beneath an overpass.",
        "{who} braces against a car door while glass bursts outward in glittering shards.",
        "A helicopter hangs low over a freeway, its searchlight pinning a speeding truck.",
        "{who} hangs one-handed from a crane hook high above the docks.",
        "Muzzle flashes stitch across a warehouse, lighting {who} in stark bursts.",
        "A fireball rolls down a corridor toward {who}, who sprints straight at the camera.",
        "Two figures trade blows on the roof of a moving train.",
    ),
    "Adventure": (
        "{who} swings on a vine across a gorge veiled in mist.",
        "A battered map, a brass compass and a coil of rope lie in the foreground.",
        "{who} peers into a torch-lit temple doorway carved with forgotten symbols.",
        "A rope bridge sways over a roaring river far below.",
        "{who} and {who2} crest a dune to see ruined towers on the horizon.",
        "A small boat noses into the mouth of a cave glittering with crystals.",
        "{who} clings to the side of a cliff, reaching for a ledge just out of grasp.",
        "A caravan of pack mules winds up a mountain pass under a wide sky.",
    ),
    "Animation": (
        "The scene is hand-drawn in soft, rounded shapes with bold outlines.",
        "A talking teapot and a nervous candlestick peer out from a kitchen shelf.",
        "Cartoonish clouds with smiling faces drift over a patchwork countryside.",
        "A wide-eyed fox in a waistcoat tips its hat toward the viewer.",
        "Every figure is drawn with exaggerated proportions and rubbery limbs.",
        "A toy cowboy and a plastic spaceman stand back to back on a bedspread.",
        "Brush-painted backgrounds glow behind flat, brightly coloured characters.",
        "A small dragon made of simple curves curls around a lantern.",
    ),
    "Children's": (
        "Kids on bicycles race down a leafy lane with a puppy bounding beside them.",
        "A treehouse strung with paper lanterns glows at dusk.",
        "{who} holds up a jar of fireflies, face lit with wonder.",
        "A circle of stuffed animals sits around a tiny tea set.",
        "A school bus painted in primary colours waits at the end of a country road.",
        "A giant friendly dog towers over a row of delighted kids.",
        "Crayon drawings are taped across a bedroom wall behind a sleeping cat.",
        "A kite shaped like a fish tugs at its string over a sunny park.",
    ),
    "Comedy": (
        "{who} is frozen mid-pratfall, a cream pie sailing past their ear.",
        "{who} and {who2} wear matching ridiculous disguises, fake moustaches askew.",
        "A wedding cake topples while the guests gape in dismay and delight.",
        "{who} stares deadpan at the camera while chaos erupts in the background.",
        "A car packed with far too much luggage sags on its axles, a mattress flapping on the roof.",
        "A goat chews the corner of an important-looking contract.",
        "{who} pokes their head out of a laundry basket, sock draped over one ear.",
        "Everyone in the frame is mid-laugh, doubled over around a dinner table.",
    ),
    "Crime": (
        "A stack of banded cash sits beside a snub-nosed revolver on a motel bed.",
        "{who} counts bills in the glow of a dashboard while rain streaks the windshield.",
        "Police tape flutters across an alley where chalk outlines mark the pavement.",
        "{who} stands in a line-up under harsh fluorescent light, height marks behind them.",
        "A getaway car idles outside a bank, its back door swinging open.",
        "Fingerprint cards and mug shots are pinned across a corkboard with red string.",
        "{who} slides a fat envelope across a diner table to {who2}.",
        "A safe hangs open in a darkened office, its contents gone.",
    ),
    "Documentary": (
        "A grainy frame shows {who} speaking straight to an unseen interviewer.",
        "Archival photographs are layered over a map marked with handwritten dates.",
        "A handheld shot follows {who} through a crowded market at dawn.",
        "Boxes of old reels and labelled tapes fill a cramped archive room.",
        "{who} sits on a folding chair in a bare room, a microphone clipped to their collar.",
        "A timeline of faded newspaper headlines runs across the frame.",
        "Real-looking footage of a protest march is framed as if from a news camera.",
        "A field researcher kneels in tall grass, notebook open, binoculars around the neck.",
    ),
    "Drama": (
        "{who} sits alone at a kitchen table, a letter trembling in their hands.",
        "{who} and {who2} face each other across a hospital bed, saying nothing.",
        "A courtroom falls silent as {who} rises to speak.",
        "{who} stares out of a rain-streaked window, jaw set against tears.",
        "A family portrait hangs crooked above an empty armchair.",
        "{who} clutches an acceptance letter on a front porch, unsure whether to open it.",
        "Packed suitcases wait by a door while {who} lingers in the hallway.",
        "{who} grips a podium in front of a hushed auditorium.",
    ),
    "Fantasy": (
        "A castle of white spires floats above the clouds on a root of rock.",
        "{who} raises a glowing staff as runes flare in the air around them.",
        "A dragon's wing unfurls across the whole upper half of the frame.",
        "{who} kneels before a sword embedded in a mossy stone.",
        "Pale fairy lights drift between ancient trees with faces in their bark.",
        "A unicorn steps out of a silver mist at the edge of a lake.",
        "{who} wears a crown of antlers and a cloak woven from leaves.",
        "An enchanted forest glows violet under two moons.",
    ),
    "Film-Noir": (
        "Venetian-blind shadows slice across {who}'s face in a smoky office.",
        "{who} lights a cigarette under a single streetlamp, hat brim low.",
        "A woman's silhouette fills a frosted-glass door marked with a detective's name.",
        "Wet cobblestones reflect a flickering neon sign that reads HOTEL.",
        "{who} in a trench coat leans against a brick wall, face half in darkness.",
        "A telephone dangles off its hook beside an overturned glass of bourbon.",
        "A revolver rests on a desk in a pool of lamplight; everything else is black.",
        "Fog curls around the wheels of a long black sedan parked by the river.",
    ),
    "Horror": (
        "A pale hand reaches out from under a child's bed.",
        "{who} backs down a corridor as the lights fail one by one behind them.",
        "A farmhouse stands against a blood-red sky, every window dark but one.",
        "Something with too many teeth grins from the shadows of a basement stair.",
        "{who} screams, lit from below by a dying flashlight.",
        "A porcelain doll with cracked eyes sits in a rocking chair that is still moving.",
        "Claw marks gouge the inside of a wooden door.",
        "A figure in a white mask watches {who} through a rain-streaked window.",
    ),
    "Musical": (
        "{who} twirls under a streetlamp, umbrella held high, mid-song.",
        "A chorus line kicks in perfect unison across a spotlit stage.",
        "{who} and {who2} dance on a rooftop, city lights spread beneath their feet.",
        "A grand piano gleams at the centre of an empty ballroom.",
        "Sheet music swirls through the air like confetti around {who}.",
        "A marching band in red jackets sweeps down a small-town main street.",
        "{who} belts a note into an old chrome microphone, eyes closed.",
        "Dancers in bright skirts fan out across a sunlit plaza.",
    ),
    "Mystery": (
        "A magnifying glass hovers over a muddy footprint on a manor carpet.",
        "{who} holds up a torn photograph with one face scratched out.",
        "A locked study door with the key still on the inside.",
        "{who} studies a wall of clues, a pencil clenched between their teeth.",
        "An unsigned letter lies beside a cold cup of tea and a stopped clock.",
        "A hidden staircase opens behind a bookcase in a candlelit library.",
        "{who} glances over their shoulder at a shape in the hedge maze.",
        "Guests around a dinner table all look at one another with suspicion.",
    ),
    "Romance": (
        "{who} and {who2} share an umbrella on a bridge at twilight.",
        "Two hands almost touch across a café table scattered with rose petals.",
        "{who} rests a forehead against {who2}'s in the glow of a porch light.",
        "A handwritten love letter lies on a pillow beside a single red rose.",
        "{who} and {who2} slow-dance alone in an emptying ballroom.",
        "A couple kisses in a train doorway as the platform blurs past.",
        "{who} looks back over a shoulder at {who2}, smiling shyly.",
        "Two silhouettes walk hand in hand along the tide line at sunset.",
    ),
    "Sci-Fi": (
        "A chrome starship banks over a ringed planet.",
        "{who}'s visor reflects a field of unfamiliar stars.",
        "A city of glass towers is threaded with hovering traffic lanes.",
        "{who} stands before a humming portal of blue light.",
        "A robot with one cracked optic sensor offers {who} its hand.",
        "Holographic readouts float around {who} in a dim laboratory.",
        "An alien landscape of violet rock stretches under three suns.",
        "A cryogenic pod frosts over, a face just visible through the glass.",
    ),
    "Thriller": (
        "{who} crouches behind a door, phone pressed to an ear, breath held.",
        "A crosshair settles over a crowded plaza seen from a high window.",
        "{who} runs through a parking garage, footsteps echoing, a shadow close behind.",
        "A ticking device sits half-hidden under a train seat.",
        "{who} stares at a photo of themselves that they never posed for.",
        "A stranger's reflection appears in a bathroom mirror behind {who}.",
        "A countdown clock glows red in a dark control room.",
        "{who} presses against a wall as a flashlight beam sweeps past.",
    ),
    "War": (
        "Soldiers crouch in a muddy trench as flares light the sky.",
        "{who} in a dented helmet carries a wounded comrade through smoke.",
        "A column of tanks rolls past a bombed-out church.",
        "Landing craft churn toward a beach under a grey dawn.",
        "{who} writes a letter home by candlelight in a sandbagged bunker.",
        "Biplanes duel above a patchwork of fields and craters.",
        "A torn regimental flag flaps over a ruined village.",
        "{who} salutes beside rows of white crosses.",
    ),
    "Western": (
        "{who} in a wide-brimmed hat squints across a sunbaked main street.",
        "A stagecoach rattles past red mesas trailing a plume of dust.",
        "Two gunfighters face each other at high noon outside a saloon.",
        "{who} rides a dappled horse along a ridge under a burning sky.",
        "A wanted poster flutters on a hitching post.",
        "Cattle stream across a river while riders whoop and wave their hats.",
        "A lone campfire flickers beneath a sky crowded with stars on the open range.",
        "{who} spins the cylinder of a revolver on a saloon porch.",
    ),
    "tone:dark": (
        "The frame is drowned in deep shadow, with only a sliver of cold light.",
        "Everything feels heavy and oppressive, as if the sky were pressing down.",
        "{who}'s eyes are hollow and haunted.",
        "Rain and soot stain every surface a bruised grey.",
        "A single bare bulb swings, throwing long unsettling shadows.",
        "The mood is bleak and menacing, without a hint of warmth.",
    ),
    "tone:lighthearted": (
        "The mood is breezy and cheerful, full of sunshine.",
        "{who} grins widely, mid-wink, as if sharing a joke with the viewer.",
        "Bunting, balloons and bright umbrellas fill the background.",
        "Everything looks playful, bouncy and carefree.",
        "{who} skips along a pavement with an ice-cream cone held aloft.",
        "A sunny afternoon glows with easy good humour.",
    ),
    "tone:tender": (
        "The light is soft and warm, like late afternoon through lace curtains.",
        "{who} cradles a sleeping infant, eyes closed in contentment.",
        "A gentle embrace is framed with quiet affection.",
        "The scene feels intimate and kind, every edge softened.",
        "{who} brushes a strand of hair from {who2}'s face.",
        "Warm candlelight wraps the figures in a protective glow.",
    ),
    "tone:suspenseful": (
        "The composition is taut, with {who} frozen in mid-step.",
        "A door stands ajar onto total darkness.",
        "Everything waits on a knife edge, as if something is about to happen.",
        "{who} holds their breath, eyes fixed on something just off-frame.",
        "A clock's second hand is caught a heartbeat before midnight.",
        "Tension crackles in the stillness of the empty room.",
    ),
    "tone:epic": (
        "The scale is vast: tiny figures stand against towering cliffs and a storm-lit sky.",
        "{who} stands on a high outcrop, cloak snapping in the wind, a vast army below.",
        "Sweeping vistas stretch to a blazing horizon.",
        "Everything is monumental, heroic and larger than life.",
        "Shafts of golden light break through clouds over an immense landscape.",
        "{who} raises a fist against a colossal sky.",
    ),
    "tone:melancholic": (
        "The colours are washed out, as if the image had faded in the sun.",
        "{who} sits on a bench in the falling snow, looking at nothing.",
        "An empty swing moves slightly in a deserted playground.",
        "The mood is wistful and quietly sad.",
        "Autumn leaves drift over a grave with fresh flowers on it.",
        "{who} holds an old photograph up to the window light.",
    ),
    "setting:city": (
        "Skyscrapers crowd the frame, their windows glittering at night.",
        "Yellow cabs jam a rain-slicked avenue under blinking signs.",
        "{who} stands on a fire escape above a roaring street.",
        "A subway train screams into a tiled station.",
        "Steam rises from a manhole beneath towering billboards.",
        "The skyline stretches behind {who} from a rooftop water tower.",
    ),
    "setting:wilderness": (
        "Pine forests roll away to snow-capped peaks.",
        "{who} wades through a cold mountain stream.",
        "A canyon opens beneath a hawk circling in the thermals.",
        "Endless prairie grass bends under a gathering storm.",
        "A log cabin sits alone at the edge of a frozen lake.",
        "{who} picks a path through dense, dripping undergrowth.",
    ),
    "setting:space": (
        "Earth hangs like a blue marble beyond a spacecraft window.",
        "{who} floats weightless in a cluttered orbital module.",
        "A space station turns slowly against a starfield.",
        "A rover's tracks stretch across grey lunar dust.",
        "A nebula spills pink and gold clouds across the black.",
        "{who} tethers to a hull, tools drifting nearby.",
    ),
    "setting:sea": (
        "Huge waves curl over the bow of a fishing boat.",
        "{who} stands at a ship's rail, salt spray in their hair.",
        "A lighthouse beam sweeps across a churning grey ocean.",
        "A submarine's periscope breaks the surface at dawn.",
        "A sailboat leans into the wind on a glittering bay.",
        "{who} dives among shafts of light into turquoise water.",
    ),
    "setting:small-town": (
        "A water tower and a single traffic light mark the edge of town.",
        "{who} leans on the counter of a diner with a checkerboard floor.",
        "White picket fences line a street of clapboard houses.",
        "A high-school football field glows under Friday-night lights.",
        "The general store's porch holds two rocking chairs and a sleeping dog.",
        "{who} pedals past a barber shop with a spinning striped pole.",
    ),
    "setting:abroad": (
        "Terracotta rooftops tumble down a hillside toward a blue harbour.",
        "{who} wanders a bazaar hung with lanterns and bolts of silk.",
        "A gondola drifts beneath a stone bridge.",
        "Temple roofs rise above a misty bamboo forest.",
        "{who} steps off a train onto a platform with signs in an unfamiliar script.",
        "A Parisian café terrace spills onto a cobbled square.",
    ),
    "bond:family": (
        "Three generations squeeze together on an old sofa.",
        "{who} lifts a laughing toddler onto their shoulders.",
        "A crowded holiday dinner table is passed hand to hand.",
        "{who} and {who2} share the same stubborn chin, clearly parent and child.",
        "Siblings bicker in the back seat of a station wagon.",
        "A mother ties her son's tie on the morning of a big day.",
    ),
    "bond:couple": (
        "{who} and {who2} are framed together, shoulders touching.",
        "Two wedding rings glint on clasped hands.",
        "{who} and {who2} argue in a kitchen, then almost laugh.",
        "A pair of silhouettes share a blanket on a hillside.",
        "{who} waits at an airport gate holding a hand-lettered sign for {who2}.",
        "Two coffee cups sit side by side on a sunny windowsill.",
    ),
    "bond:friends": (
        "Four friends squeeze into a photo booth, pulling faces.",
        "{who} and {who2} sit on the hood of a car, sharing fries.",
        "A gang of pals cannonballs into a swimming hole.",
        "{who} throws an arm around {who2}'s shoulders in a crowded bar.",
        "Old friends clink bottles around a crackling bonfire.",
        "Two best friends share a pair of headphones on a bus.",
    ),
    "bond:rivals": (
        "{who} and {who2} glare at each other, faces inches apart.",
        "Two chess players lean over a board, eyes locked.",
        "{who} and {who2} stand back to back, ready to turn.",
        "Rival teams square off across a muddy field.",
        "{who} smirks while {who2} seethes in the background.",
        "Two drivers rev their engines side by side at a red light.",
    ),
    "bond:loner": (
        "{who} walks alone down an empty highway.",
        "A single figure stands at the end of a long pier.",
        "{who} eats a solitary dinner at a counter, back to the room.",
        "A tiny silhouette crosses a vast salt flat.",
        "{who} sits by themselves on the edge of a crowded dance floor.",
        "A lone rider disappears into the haze.",
    ),
    "bond:team": (
        "A ragtag crew lines up shoulder to shoulder, each with a signature tool.",
        "{who} leads a squad through a doorway in a tight formation.",
        "A team huddles over a blueprint spread on a workbench.",
        "Five specialists stride toward the camera in slow motion.",
        "A crew of misfits crowds the cockpit, all pointing at once.",
        "{who} and {who2} hoist a trophy while the rest of the squad cheers.",
    ),
    "era:period": (
        "Costumes and cars place the scene decades in the past.",
        "{who} wears a fedora and a double-breasted suit.",
        "Gas lamps and horse-drawn carts line a cobbled street.",
        "The image has the grain and sepia tint of an old photograph.",
        "{who} in a corseted gown descends a grand staircase.",
        "A crackling wireless set and a rotary telephone sit on a lace doily.",
    ),
    "era:modern": (
        "Smartphones glow in every hand in the crowd.",
        "{who} checks a laptop in a glass-walled office.",
        "Sleek modern architecture frames the figures in clean lines.",
        "Pagers, neon windbreakers and a boombox set the scene firmly in the present day.",
        "{who} rollerblades past a row of contemporary shopfronts.",
        "A flat, crisp digital look gives everything a present-day feel.",
    ),
}

COMPOSITIONS = (
    "A vertical poster with the main figure framed in a tight three-quarter view.",
    "A wide horizontal banner composed in three vertical panels.",
    "A close-up key art image with the subject slightly off-centre.",
    "A low-angle shot that makes the figures loom over the viewer.",
    "A symmetrical composition with the horizon cutting the frame in half.",
    "A collage of overlapping cut-out figures on a plain background.",
    "An aerial view looking straight down on the scene.",
    "A split-screen composition divided by a diagonal line.",
    "A portrait-style layout with a heavy vignette around the edges.",
    "A minimalist composition with lots of empty negative space.",
    "A crowded ensemble layout with faces stacked in a pyramid.",
    "A cinematic letterboxed frame with thin black bars.",
)  # fmt: skip
PALETTES = (
    "The palette is teal and orange.", "The palette is muted greys with a single accent of red.",
    "Everything is tinted in saturated magenta and cyan.", "The colours are earthy ochres and olive greens.",
    "The palette is pastel pinks and mint.", "The image is high-contrast black and white.",
    "Cool blues dominate, with warm highlights on the skin.", "The palette is gold, cream and deep brown.",
    "Acid greens and purples give the image a neon glow.", "The colours are sun-bleached and dusty.",
    "The palette is crimson and charcoal.", "Soft sepia and ivory tones cover the whole image.",
)  # fmt: skip
LETTERINGS = (
    "The title '{title}' runs across the bottom third in bold serif capitals.",
    "'{title}' is stamped in a distressed stencil font near the top.",
    "The words '{title}' curve in hand-painted script across the sky.",
    "'{title}' appears in thin, widely spaced sans-serif letters at the centre.",
    "A chunky block-letter '{title}' fills the lower edge.",
    "'{title}' glows in outlined neon-style type in the upper corner.",
    "The title '{title}' is set in small elegant italics beneath the image.",
    "'{title}' is scrawled in rough brush strokes down one side.",
)  # fmt: skip
FINISHES = (
    "The print has a glossy finish.", "Film grain is visible across the image.", "The edges show a worn paper texture.",
    "A faint halftone dot pattern covers the image.", "The image is crisp and digitally clean.",
    "Light leaks bleed in from the left edge.", "The surface has a matte, painterly texture.",
)  # fmt: skip
FILLERS = (
    "A studio logo sits small in the lower corner.", "Credits run in condensed type along the bottom edge.",
    "A release-date banner crosses the top.", "A thin white border frames the whole image.",
    "A tagline sits in small letters under the title.", "Rating and runtime appear in a narrow strip.",
    "The background fades to a flat colour at the edges.", "A small festival laurel sits in one corner.",
    "A barcode-like strip of production text runs vertically on the right.", "A faint watermark shows in the centre.",
)  # fmt: skip


def title_style(rng: random.Random) -> dict[str, int]:
    """The distractor details one title's artworks share (indices into the banks above)."""
    return {
        "composition": rng.randrange(len(COMPOSITIONS)), "palette": rng.randrange(len(PALETTES)),
        "lettering": rng.randrange(len(LETTERINGS)), "finish": rng.randrange(len(FINISHES)),
    }  # fmt: skip


def _fill(template: str, rng: random.Random) -> str:
    first, second = rng.sample(PEOPLE, 2)
    text = template.replace("{who}", first).replace("{who2}", second)
    return text[0].upper() + text[1:]


def write_caption(title: str, style: dict[str, int], facet: str, secondary: str | None, rng: random.Random) -> str:
    """One artwork's caption: shared style, 2-5 scenes of ``facet``, 0-2 of ``secondary``, 1-3 fillers."""
    scenes = rng.sample(SCENES[facet], rng.randint(2, 5))
    if secondary is not None:
        scenes += rng.sample(SCENES[secondary], rng.randint(0, 2))
    parts = [COMPOSITIONS[style["composition"]], *(_fill(s, rng) for s in scenes), PALETTES[style["palette"]],
             LETTERINGS[style["lettering"]].replace("{title}", title or "Untitled"), FINISHES[style["finish"]],
             *rng.sample(FILLERS, rng.randint(1, 3))]
    return " ".join(parts)
