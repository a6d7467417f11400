// Package find matches people's names across scripts and spellings: the
// same person typed as محمد, Mohammed, Muhammad, Mohamad or Мухаммед by
// different colleagues (issue 17, docs/find.md).
//
// A text goes through three stages. Normalize folds case, drops Latin
// diacritics and Arabic tashkeel and tatweel, unifies Arabic letter forms
// (alef, ta marbuta, alef maqsura, hamza carriers, Persian kaf and yeh)
// and Cyrillic ё, and splits on word boundaries. Transliterate turns each
// word into lowercase Latin (Arabic by common English and passport usage,
// Cyrillic by BGN/PCGN). PhoneticKey reduces the Latin to a consonant
// skeleton in which equivalent consonants share a class, so all five
// spellings above come out as "mhmd".
//
// Index is an in-memory inverted index over those forms: Add, Remove and
// Search, ranked exact normalised match > same phonetic key > small edit
// distance, ties broken by document ID. Terms lists the index terms of a
// text, so a caller that persists postings can store them under a keyed
// hash of the term and never write a plaintext term to disk; Similarity
// re-ranks candidates it fetched that way.
//
// The package does no I/O: no disk, network, clock or randomness.
package find
