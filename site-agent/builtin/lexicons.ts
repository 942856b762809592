/**
 * Hand-written lexicons for the generated corpus: common words per part of speech and a few facts
 * about word order. Words are lowercase and use only letters in the shared CHARSET (no apostrophes,
 * no Catalan middle dot), so every generated character is encodable.
 */

/** Parts of speech a sentence template can ask for. */
export type WordClass = 'det' | 'noun' | 'adj' | 'verb' | 'adv' | 'prep' | 'conj' | 'pron';

/** One language's words by class (most frequent first) and its word-order facts. */
export interface Lexicon {
  /** Words per class, space separated, most common first (sampling is Zipf-weighted by rank). */
  readonly words: Readonly<Record<WordClass, string>>;
  /** Romance languages put most adjectives after the noun. */
  readonly adjAfterNoun: boolean;
  /** Basque is verb-final with postpositions. */
  readonly verbFinal: boolean;
}

/** Lexicons keyed by ISO 639-1 code. */
export const LEXICONS = {
  es: {
    adjAfterNoun: true,
    verbFinal: false,
    words: {
      det: 'el la los las un una este esta mi su nuestro otro',
      noun: 'casa tiempo mundo vida día hombre mujer niño ciudad agua trabajo país año camino libro mesa puerta calle perro gato amigo familia noche mañana escuela mar pueblo río montaña historia música comida ventana tierra cielo sol luna',
      adj: 'grande pequeño nuevo viejo bueno malo largo alto bonito rojo verde blanco negro feliz rápido difícil fácil antiguo',
      verb: 'tiene hace dice ve quiere lleva busca encuentra mira come bebe escribe lee abre cierra compra vende espera conoce necesita pierde sigue',
      adv: 'siempre nunca también hoy ahora aquí allí muy bien después pronto todavía',
      prep: 'en con sin para por sobre entre desde hacia bajo',
      conj: 'y pero porque aunque cuando mientras',
      pron: 'él ella nosotros ellos usted alguien nadie',
    },
  },
  ca: {
    adjAfterNoun: true,
    verbFinal: false,
    words: {
      det: 'el la els les un una aquest aquesta meu seu nostre altre',
      noun: 'casa temps món vida dia home dona nen ciutat aigua feina país any camí llibre taula porta carrer gos gat amic família nit matí escola mar poble riu muntanya història música menjar finestra terra cel sol lluna',
      adj: 'gran petit nou vell bo dolent llarg alt bonic vermell verd blanc negre feliç ràpid difícil fàcil antic',
      verb: 'té fa diu veu vol porta busca troba mira menja beu escriu llegeix obre tanca compra ven espera coneix necessita perd segueix',
      adv: 'sempre mai també avui ara aquí allà molt bé després aviat encara',
      prep: 'a amb sense per sobre entre des cap sota fins',
      conj: 'i però perquè encara quan mentre',
      pron: 'ell ella nosaltres ells vostè algú ningú',
    },
  },
  en: {
    adjAfterNoun: false,
    verbFinal: false,
    words: {
      det: 'the a this that my his her our their every some another',
      noun: 'house time world life day man woman child city water work country year road book table door street dog cat friend family night morning school sea town river mountain story music food window land sky sun moon',
      adj: 'big small new old good bad long tall pretty red green white black happy quick hard easy ancient',
      verb: 'has makes says sees wants carries seeks finds watches eats drinks writes reads opens closes buys sells awaits knows needs loses follows',
      adv: 'always never also today now here there very well later soon still',
      prep: 'in with without for by over between from toward under',
      conj: 'and but because although when while',
      pron: 'he she we they you someone nobody',
    },
  },
  fr: {
    adjAfterNoun: true,
    verbFinal: false,
    words: {
      det: 'le la les un une ce cette mon son notre votre chaque',
      noun: 'maison temps monde vie jour homme femme enfant ville eau travail pays année chemin livre table porte rue chien chat ami famille nuit matin école mer village rivière montagne histoire musique repas fenêtre terre ciel soleil lune',
      adj: 'grand petit nouveau vieux bon mauvais long haut joli rouge vert blanc noir heureux rapide difficile facile ancien',
      verb: 'a fait dit voit veut porte cherche trouve regarde mange boit écrit lit ouvre ferme achète vend attend connaît perd suit',
      adv: 'toujours jamais aussi aujourd maintenant ici là très bien après bientôt encore',
      prep: 'dans avec sans pour par sur entre depuis vers sous',
      conj: 'et mais parce quand pendant donc',
      pron: 'il elle nous ils vous quelqu personne',
    },
  },
  de: {
    adjAfterNoun: false,
    verbFinal: false,
    words: {
      det: 'der die das ein eine dieser diese mein sein unser jeder kein',
      noun: 'haus zeit welt leben tag mann frau kind stadt wasser arbeit land jahr weg buch tisch tür straße hund katze freund familie nacht morgen schule meer dorf fluss berg geschichte musik essen fenster erde himmel sonne mond',
      adj: 'große kleine neue alte gute schlechte lange hohe schöne rote grüne weiße schwarze glückliche schnelle schwere leichte',
      verb: 'hat macht sagt sieht will trägt sucht findet schaut isst trinkt schreibt liest öffnet schließt kauft verkauft wartet kennt braucht verliert folgt',
      adv: 'immer nie auch heute jetzt hier dort sehr gut später bald noch',
      prep: 'in mit ohne für durch über zwischen von nach unter',
      conj: 'und aber weil obwohl wenn während',
      pron: 'er sie wir ihr man jemand niemand',
    },
  },
  it: {
    adjAfterNoun: true,
    verbFinal: false,
    words: {
      det: 'il la i le un una questo questa mio suo nostro ogni',
      noun: 'casa tempo mondo vita giorno uomo donna bambino città acqua lavoro paese anno strada libro tavolo porta via cane gatto amico famiglia notte mattina scuola mare villaggio fiume montagna storia musica cibo finestra terra cielo sole luna',
      adj: 'grande piccolo nuovo vecchio buono cattivo lungo alto bello rosso verde bianco nero felice veloce difficile facile antico',
      verb: 'ha fa dice vede vuole porta cerca trova guarda mangia beve scrive legge apre chiude compra vende aspetta conosce perde segue',
      adv: 'sempre mai anche oggi ora qui lì molto bene dopo presto ancora',
      prep: 'in con senza per su tra da verso sotto fino',
      conj: 'e ma perché sebbene quando mentre',
      pron: 'lui lei noi loro voi qualcuno nessuno',
    },
  },
  pt: {
    adjAfterNoun: true,
    verbFinal: false,
    words: {
      det: 'o a os as um uma este esta meu seu nosso outro',
      noun: 'casa tempo mundo vida dia homem mulher criança cidade água trabalho país ano caminho livro mesa porta rua cão gato amigo família noite manhã escola mar aldeia rio montanha história música comida janela terra céu sol lua',
      adj: 'grande pequeno novo velho bom mau longo alto bonito vermelho verde branco preto feliz rápido difícil fácil antigo',
      verb: 'tem faz diz vê quer leva procura encontra olha come bebe escreve lê abre fecha compra vende espera conhece precisa perde segue',
      adv: 'sempre nunca também hoje agora aqui ali muito bem depois cedo ainda',
      prep: 'em com sem para por sobre entre desde até sob',
      conj: 'e mas porque embora quando enquanto',
      pron: 'ele ela nós eles você alguém ninguém',
    },
  },
  eu: {
    adjAfterNoun: true,
    verbFinal: true,
    words: {
      det: 'bat hau hori hura nire zure gure bere beste',
      noun: 'etxea denbora mundua bizitza eguna gizona emakumea umea hiria ura lana herria urtea bidea liburua mahaia atea kalea txakurra katua laguna familia gaua goiza eskola itsasoa herrixka ibaia mendia historia musika janaria leihoa lurra zerua eguzkia ilargia',
      adj: 'handia txikia berria zaharra ona txarra luzea altua polita gorria berdea zuria beltza pozik azkarra zaila erraza',
      verb: 'du egiten dio ikusten nahi darama bilatzen aurkitzen begiratzen jaten edaten idazten irakurtzen irekitzen ixten erosten saltzen itxaroten ezagutzen behar galtzen',
      adv: 'beti inoiz ere gaur orain hemen han oso ondo gero laster oraindik',
      prep: 'etxean mendian hirian kalean bidean ondoan azpian gainean artean barruan',
      conj: 'eta baina zeren nahiz noiz bitartean',
      pron: 'hura gu haiek zu norbait inor ni',
    },
  },
} as const satisfies Record<string, Lexicon>;
