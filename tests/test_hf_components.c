/* tokenizer.json, component by component, against the outputs tokenizers' own unit tests give (huggingface/tokenizers
 * v0.22, the tests in its pre-tokenizer, normalizer, decoder, BPE and added-vocabulary sources): every Split
 * behaviour, Metaspace schemes, Digits, Punctuation, Whitespace, ByteLevel, normalizers, added-token flags, BPE;
 * then the companion files, refusals naming the component, hostile files and text, and the kind of file. */
#include "hf_testutil.h"

/* ---- pre-tokenizers (expected splits from tokenizers' own tests) ---- */

static void split_behaviours_cut_as_tokenizers_does(void **state) {
    (void)state;
    static const char *behaviours[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    const char *const *want[] = {
        L("How", "are", "you", "doing", "?"),
        L("How", " ", "are", " ", "you", " ", "doing", "?"),
        L("How ", "are ", "you ", "doing", "?"),
        L("How", " are", " you", " doing", "?"),
        L("How", " ", "are", " ", "you", " ", "doing?"),
    };
    for (int i = 0; i < 5; i++) {
        char pre[256];
        snprintf(pre, sizeof pre, "{`type`:`Split`,`pattern`:{`Regex`:`\\\\w+|[^\\\\w\\\\s]+`},`behavior`:`%s`,"
                 "`invert`:true}", behaviours[i]);
        spec sp = {.pre = pre, .tokens = ascii};
        pissa_tokenizer *tok = spec_tok(&sp);
        expect_pieces(tok, "How are you doing?", want[i]);
        pissa_tokenizer_free(tok);
    }
    /* a string pattern and its regex cut alike; inverting "Hello" keeps what splitting on " " keeps */
    spec s1 = {.pre = "{`type`:`Split`,`pattern`:{`String`:` `},`behavior`:`Removed`,`invert`:false}", .tokens = ascii};
    spec s2 = {.pre = "{`type`:`Split`,`pattern`:{`Regex`:`\\\\s+`},`behavior`:`Removed`,`invert`:false}",
               .tokens = ascii};
    spec s3 = {.pre = "{`type`:`Split`,`pattern`:{`String`:`Hello`},`behavior`:`Removed`,`invert`:true}",
               .tokens = ascii};
    pissa_tokenizer *t1 = spec_tok(&s1), *t2 = spec_tok(&s2), *t3 = spec_tok(&s3);
    expect_pieces(t1, "Hey, man!", L("Hey,", "man!"));
    expect_pieces(t2, "Hey, man!", L("Hey,", "man!"));
    expect_pieces(t1, "Hello Hello Hello", L("Hello", "Hello", "Hello"));
    expect_pieces(t3, "Hello Hello Hello", L("Hello", "Hello", "Hello"));
    pissa_tokenizer_free(t1);
    pissa_tokenizer_free(t2);
    pissa_tokenizer_free(t3);
    /* an empty match right after a match is skipped (Oniguruma's find_iter): "a*" on "baaac" */
    spec s4 = {.pre = "{`type`:`Split`,`pattern`:{`Regex`:`a*`},`behavior`:`MergedWithNext`,`invert`:false}",
               .tokens = ascii};
    pissa_tokenizer *t4 = spec_tok(&s4);
    /* matches (0,0) (1,4) (5,5): events b | aaa | c, the empty ones vanish */
    expect_pieces(t4, "baaac", L("b", "aaac"));
    pissa_tokenizer_free(t4);
}

static void metaspace_prepend_schemes_and_split(void **state) {
    (void)state;
    spec always = {.pre = "{`type`:`Metaspace`,`replacement`:`\xe2\x96\x81`,`prepend_scheme`:`always`,`split`:true}",
                   .tokens = ascii};
    pissa_tokenizer *tok = spec_tok(&always);
    expect_pieces(tok, "Hey friend!", L("\xe2\x96\x81Hey", "\xe2\x96\x81" "friend!"));
    expect_pieces(tok, "Hey   friend!", L("\xe2\x96\x81Hey", "\xe2\x96\x81", "\xe2\x96\x81", "\xe2\x96\x81" "friend!"));
    pissa_tokenizer_free(tok);
    /* "first" only prepends to the piece at the start of the text; split false keeps a piece whole */
    spec first = {.pre = "{`type`:`Sequence`,`pretokenizers`:[{`type`:`Split`,`pattern`:{`Regex`:`(<s>)`},"
                         "`behavior`:`Isolated`,`invert`:false},{`type`:`Metaspace`,`replacement`:`\xe2\x96\x81`,"
                         "`prepend_scheme`:`first`,`split`:false}]}",
                  .tokens = ascii};
    tok = spec_tok(&first);
    expect_pieces(tok, "Hey my friend <s>how\xe2\x96\x81" "are you",
                  L("\xe2\x96\x81Hey\xe2\x96\x81my\xe2\x96\x81" "friend\xe2\x96\x81", "<s>",
                    "how\xe2\x96\x81" "are\xe2\x96\x81you"));
    expect_pieces(tok, " Hey <s>how", L("\xe2\x96\x81Hey\xe2\x96\x81", "<s>", "how"));
    expect_pieces(tok, " Hey <s>how <s>are <s> you",
                  L("\xe2\x96\x81Hey\xe2\x96\x81", "<s>", "how\xe2\x96\x81", "<s>", "are\xe2\x96\x81", "<s>",
                    "\xe2\x96\x81you"));
    pissa_tokenizer_free(tok);
    /* then "always" with split on those pieces */
    spec chained = {.pre = "{`type`:`Sequence`,`pretokenizers`:[{`type`:`Split`,`pattern`:{`Regex`:`(<s>)`},"
                           "`behavior`:`Isolated`,`invert`:false},{`type`:`Metaspace`,`replacement`:`\xe2\x96\x81`,"
                           "`prepend_scheme`:`first`,`split`:false},{`type`:`Metaspace`,`replacement`:`\xe2\x96\x81`,"
                           "`prepend_scheme`:`always`,`split`:true}]}",
                    .tokens = ascii};
    tok = spec_tok(&chained);
    expect_pieces(tok, "Hey my friend <s>how\xe2\x96\x81" "are you",
                  L("\xe2\x96\x81Hey", "\xe2\x96\x81my", "\xe2\x96\x81" "friend", "\xe2\x96\x81", "\xe2\x96\x81<s>",
                    "\xe2\x96\x81how", "\xe2\x96\x81" "are", "\xe2\x96\x81you"));
    pissa_tokenizer_free(tok);
    /* never: no replacement character in front */
    spec never = {.pre = "{`type`:`Metaspace`,`replacement`:`\xe2\x96\x81`,`prepend_scheme`:`never`,`split`:true}",
                  .tokens = ascii};
    tok = spec_tok(&never);
    expect_pieces(tok, "Hey friend", L("Hey", "\xe2\x96\x81" "friend"));
    pissa_tokenizer_free(tok);
    /* the decoder drops the replacement characters of the first token unless the scheme is never */
    spec dec_always = {.decoder = "{`type`:`Metaspace`,`replacement`:`\xe2\x96\x81`,`prepend_scheme`:`always`}",
                       .tokens = L("\xe2\x96\x81Hey", "\xe2\x96\x81" "friend!")};
    spec dec_never = {.decoder = "{`type`:`Metaspace`,`replacement`:`\xe2\x96\x81`,`prepend_scheme`:`never`}",
                      .tokens = L("\xe2\x96\x81Hey", "\xe2\x96\x81" "friend!")};
    tok = spec_tok(&dec_always);
    expect_decode(tok, L("\xe2\x96\x81Hey", "\xe2\x96\x81" "friend!"), 0, "Hey friend!");
    pissa_tokenizer_free(tok);
    tok = spec_tok(&dec_never);
    expect_decode(tok, L("\xe2\x96\x81Hey", "\xe2\x96\x81" "friend!"), 0, " Hey friend!");
    pissa_tokenizer_free(tok);
}

static void digits_punctuation_whitespace_and_byte_level(void **state) {
    (void)state;
    spec digits = {.pre = "{`type`:`Digits`,`individual_digits`:false}", .tokens = ascii};
    spec single = {.pre = "{`type`:`Digits`,`individual_digits`:true}", .tokens = ascii};
    spec punct = {.pre = "{`type`:`Punctuation`}", .tokens = ascii};
    spec ws = {.pre = "{`type`:`Whitespace`}", .tokens = ascii};
    spec wss = {.pre = "{`type`:`WhitespaceSplit`}", .tokens = ascii};
    spec bl = {.pre = "{`type`:`ByteLevel`,`add_prefix_space`:false,`trim_offsets`:true,`use_regex`:true}",
               .tokens = ascii};
    spec bl_prefix = {.pre = "{`type`:`ByteLevel`,`add_prefix_space`:true,`trim_offsets`:true,`use_regex`:true}",
                      .tokens = ascii};
    spec bl_plain = {.pre = "{`type`:`ByteLevel`,`add_prefix_space`:true,`trim_offsets`:true,`use_regex`:false}",
                     .tokens = ascii};
    pissa_tokenizer *tok = spec_tok(&digits);
    expect_pieces(tok, "Hey 123 friend!", L("Hey ", "123", " friend!"));
    pissa_tokenizer_free(tok);
    tok = spec_tok(&single);
    expect_pieces(tok, "Hey 123 friend!", L("Hey ", "1", "2", "3", " friend!"));
    /* every numeric character (Rust's char::is_numeric: Nd, Nl, No), not only ASCII digits (transformers.js) */
    expect_pieces(tok, "x\xc2\xb2" "3\xd9\xa3\xe2\x85\xab", L("x", "\xc2\xb2", "3", "\xd9\xa3", "\xe2\x85\xab"));
    pissa_tokenizer_free(tok);
    tok = spec_tok(&punct);
    expect_pieces(tok, "Hey friend!     How are you?!?", L("Hey friend", "!", "     How are you", "?", "!", "?"));
    pissa_tokenizer_free(tok);
    tok = spec_tok(&ws);
    expect_pieces(tok, "Hey man!", L("Hey", "man", "!"));
    expect_pieces(tok, "How are you doing?", L("How", "are", "you", "doing", "?"));
    expect_pieces(tok, "\n", NONE_);
    pissa_tokenizer_free(tok);
    tok = spec_tok(&wss);
    expect_pieces(tok, "Hey man!", L("Hey", "man!"));
    expect_pieces(tok, "Hey, man, Good?", L("Hey,", "man,", "Good?"));
    pissa_tokenizer_free(tok);
    tok = spec_tok(&bl);
    expect_pieces(tok, "Hello my friend, how is your day going?",
                  L("Hello", "\xc4\xa0my", "\xc4\xa0" "friend", ",", "\xc4\xa0how", "\xc4\xa0is", "\xc4\xa0your",
                    "\xc4\xa0" "day", "\xc4\xa0going", "?"));
    expect_pieces(tok, "Hello there\nHello there", L("Hello", "\xc4\xa0there", "\xc4\x8a", "Hello", "\xc4\xa0there"));
    expect_pieces(tok, "Hello there       dear",
                  L("Hello", "\xc4\xa0there", "\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0", "\xc4\xa0" "dear"));
    expect_pieces(tok, "i\xe2\xad\xa2j", L("i", "\xc3\xa2\xc5\x83\xc2\xa2", "j"));
    pissa_tokenizer_free(tok);
    tok = spec_tok(&bl_prefix);
    const char *const *with_prefix = L("\xc4\xa0Hello", "\xc4\xa0my", "\xc4\xa0" "friend", ",", "\xc4\xa0how",
                                       "\xc4\xa0is", "\xc4\xa0your", "\xc4\xa0" "day", "\xc4\xa0going", "?");
    expect_pieces(tok, "Hello my friend, how is your day going?", with_prefix);
    expect_pieces(tok, " Hello my friend, how is your day going?", with_prefix);
    pissa_tokenizer_free(tok);
    tok = spec_tok(&bl_plain);
    expect_pieces(tok, "Hello my friend, how is your day going?",
                  L("\xc4\xa0Hello\xc4\xa0my\xc4\xa0" "friend,\xc4\xa0how\xc4\xa0is\xc4\xa0your\xc4\xa0" "day\xc4\xa0going?"));
    pissa_tokenizer_free(tok);
}

/* ---- normalizers ---- */

static void normalizers_follow_unicode_and_tokenizers(void **state) {
    (void)state;
    struct {
        const char *normalizer, *in, *out;
    } cases[] = {
        {"{`type`:`NFC`}", "e\xcc\x81 \xe2\x84\xab \xef\xac\x81", "\xc3\xa9 \xc3\x85 \xef\xac\x81"},          /* é Å, ﬁ kept */
        {"{`type`:`NFD`}", "\xc3\xa9\xea\xb0\x81", "e\xcc\x81\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8"},          /* é 각 */
        {"{`type`:`NFKC`}", "\xef\xac\x81 \xe2\x91\xa0 \xef\xbc\xa1 e\xcc\x81", "fi 1 A \xc3\xa9"},          /* ﬁ ① Ａ */
        {"{`type`:`NFKD`}", "\xef\xac\x81\xc3\xa9", "fie\xcc\x81"},
        {"{`type`:`Lowercase`}", "HeLLo \xc3\x89\xce\xa3 \xc4\xb0", "hello \xc3\xa9\xcf\x83 i\xcc\x87"},    /* İ -> i̇ */
        {"{`type`:`Strip`,`strip_left`:true,`strip_right`:false}", " \t\xe3\x80\x80 a b \n", "a b \n"},
        {"{`type`:`Strip`,`strip_left`:true,`strip_right`:true}", "\xc2\x85 a b \xe2\x80\xa8", "a b"},
        {"{`type`:`Prepend`,`prepend`:`\xe2\x96\x81`}", "hey", "\xe2\x96\x81hey"},
        {"{`type`:`Prepend`,`prepend`:`\xe2\x96\x81`}", "", ""},
        {"{`type`:`Replace`,`pattern`:{`String`:` `},`content`:`\xe2\x96\x81`}", " a  b", "\xe2\x96\x81" "a\xe2\x96\x81\xe2\x96\x81" "b"},
        {"{`type`:`Replace`,`pattern`:{`Regex`:`\\\\s+`},`content`:`_`}", "a \t b\n\nc", "a_b_c"},
        /* empty matches: one at 0, "aaa", one at the end; none right after "aaa" (Oniguruma's find_iter) */
        {"{`type`:`Replace`,`pattern`:{`Regex`:`a*`},`content`:`X`}", "baaac", "XbXcX"},
        {"{`type`:`Replace`,`pattern`:{`String`:``},`content`:`X`}", "ab", "XaXbX"}, /* "ab".replaceAll("", "X") */
        {"{`type`:`Sequence`,`normalizers`:[{`type`:`Prepend`,`prepend`:`\xe2\x96\x81`},{`type`:`Replace`,"
         "`pattern`:{`String`:` `},`content`:`\xe2\x96\x81`}]}", "Hey you", "\xe2\x96\x81Hey\xe2\x96\x81you"},
        {"{`type`:`ByteLevel`}", "a \xc3\xa9", "a\xc4\xa0\xc3\x83\xc2\xa9"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        spec sp = {.normalizer = cases[i].normalizer, .tokens = ascii};
        pissa_tokenizer *tok = spec_tok(&sp);
        expect_normalized(tok, cases[i].in, cases[i].out);
        pissa_tokenizer_free(tok);
    }
}

/* ---- added tokens (tokenizers' added_vocabulary.rs tests, through a character vocabulary) ---- */

static void added_tokens_flags_split_like_tokenizers(void **state) {
    (void)state;
    /* my: lstrip + rstrip; name; ony: single_word (all normalized); [CLS], [SEP] special */
    spec sp = {.normalizer = "{`type`:`Lowercase`}",
               .added = "[{`id`:99,`content`:`[CLS]`,`special`:true,`normalized`:false},"
                        "{`id`:99,`content`:`[SEP]`,`special`:true,`normalized`:false},"
                        "{`id`:99,`content`:`my`,`lstrip`:true,`rstrip`:true,`normalized`:true},"
                        "{`id`:99,`content`:`name`,`normalized`:true},"
                        "{`id`:99,`content`:`ony`,`single_word`:true,`normalized`:true}]",
               .tokens = ascii};
    pissa_tokenizer *tok = spec_tok(&sp);
    expect_tokens(tok, "[CLS] My name is Anthony [SEP]", 0,
                  L("[CLS]", "my", "name", " ", "i", "s", " ", "a", "n", "t", "h", "o", "n", "y", " ", "[SEP]"));
    /* added tokens take the ids after the 98 of the vocabulary, in file order, whatever the file declares */
    assert_int_equal(pissa_tokenizer_token_to_id(tok, "[CLS]", 5), 98);
    assert_int_equal(pissa_tokenizer_token_to_id(tok, "ony", 3), 102);
    assert_true(pissa_tokenizer_is_special(tok, 98) && pissa_tokenizer_is_special(tok, 99));
    assert_true(!pissa_tokenizer_is_special(tok, 100) && !pissa_tokenizer_is_special(tok, 97));
    pissa_tokenizer_free(tok);

    spec mask = {.normalizer = "{`type`:`Lowercase`}",
                 .added = "[{`content`:`<mask>`,`single_word`:true,`normalized`:true}]",
                 .tokens = L(" ", "m", "y", "n", "a", "e", "o", "<", "s", "k", ">", ",", "-", "\xe2\x97\x8c",
                             "\xcc\xb0")};
    tok = spec_tok(&mask);
    expect_tokens(tok, "<mask> My name <mask> A<mask> <mask>ony <mask>", 0,
                  L("<mask>", " ", "m", "y", " ", "n", "a", "m", "e", " ", "<mask>", " ", "a", "<", "m", "a", "s",
                    "k", ">", " ", "<", "m", "a", "s", "k", ">", "o", "n", "y", " ", "<mask>"));
    /* punctuation is not a word character; a combining mark is */
    expect_tokens(tok, "<mask>, <mask>- \xe2\x97\x8c\xcc\xb0<mask>", 0,
                  L("<mask>", ",", " ", "<mask>", "-", " ", "\xe2\x97\x8c", "\xcc\xb0", "<", "m", "a", "s", "k", ">"));
    pissa_tokenizer_free(tok);

    spec strip = {.normalizer = "{`type`:`Lowercase`}",
                  .added = "[{`content`:`<mask>`,`lstrip`:true,`rstrip`:true,`single_word`:true,`normalized`:true}]",
                  .tokens = L("h", "i", "t", "e", "r", " ")};
    tok = spec_tok(&strip);
    /* the whitespace on both sides goes into the token (\t and U+2000 are spaces too); a previous match keeps its own */
    expect_tokens(tok, "Hi <mask> there\t<mask>\t<mask>\xe2\x80\x80", 0,
                  L("h", "i", "<mask>", "t", "h", "e", "r", "e", "<mask>", "<mask>"));
    pissa_tokenizer_free(tok);

    /* longest match wins; a special token is found in the raw text before normalization */
    spec longest = {.normalizer = "{`type`:`Lowercase`}",
                    .added = "[{`content`:`<s>`,`special`:true,`normalized`:false},"
                             "{`content`:`<s>x`,`special`:true,`normalized`:false}]",
                    .tokens = ascii};
    tok = spec_tok(&longest);
    expect_tokens(tok, "a<s>xb<s>C<S>", 0, L("a", "<s>x", "b", "<s>", "c", "<", "s", ">"));
    pissa_tokenizer_free(tok);
}

/* ---- the BPE model (tokenizers' models/bpe/model.rs tests) ---- */

static void bpe_merges_unk_byte_fallback_and_ignore_merges(void **state) {
    (void)state;
    spec unrelated = {.tokens = L("u", "n", "r", "e", "l", "a", "t", "d", "re", "at", "ed", "un", "ated", "rel",
                                  "related", "unrelated"),
                      .merges = "[`r e`,`a t`,`e d`,`u n`,`at ed`,`re l`,`rel ated`,`un related`]"};
    pissa_tokenizer *tok = spec_tok(&unrelated);
    expect_tokens(tok, "unrelated", 0, L("unrelated"));
    pissa_tokenizer_free(tok);
    /* merges as [a, b] pairs read the same */
    spec pairs = unrelated;
    pairs.merges = "[[`r`,`e`],[`a`,`t`],[`e`,`d`],[`u`,`n`],[`at`,`ed`],[`re`,`l`],[`rel`,`ated`],[`un`,`related`]]";
    tok = spec_tok(&pairs);
    expect_tokens(tok, "unrelated", 0, L("unrelated"));
    pissa_tokenizer_free(tok);

    spec unk = {.tokens = L("<unk>", "a", "b"), .model_extra = ",`unk_token`:`<unk>`,`fuse_unk`:false"};
    tok = spec_tok(&unk);
    expect_tokens(tok, "c", 0, L("<unk>"));
    expect_tokens(tok, "cc", 0, L("<unk>", "<unk>"));
    expect_tokens(tok, "accb", 0, L("a", "<unk>", "<unk>", "b"));
    pissa_tokenizer_free(tok);
    unk.model_extra = ",`unk_token`:`<unk>`,`fuse_unk`:true";
    tok = spec_tok(&unk);
    expect_tokens(tok, "cc", 0, L("<unk>"));
    expect_tokens(tok, "accb", 0, L("a", "<unk>", "b"));
    pissa_tokenizer_free(tok);

    /* without unk_token an unknown character is dropped (tokenizers' merge_word), so a word can have no ids; the
     * second encode of it comes from the word cache (which once did NULL + 0: fuzz_hf_tokenizer's finding) */
    spec no_unk = {.tokens = L("a", "b")};
    tok = spec_tok(&no_unk);
    for (int k = 0; k < 2; k++) {
        expect_tokens(tok, "c", 0, NONE_);
        expect_tokens(tok, "acb", 0, L("a", "b"));
    }
    pissa_tokenizer_free(tok);

    spec fallback = {.tokens = L("<unk>", "<0x61>", "<0x0A>"), .model_extra = ",`unk_token`:`<unk>`,`byte_fallback`:true"};
    tok = spec_tok(&fallback);
    expect_tokens(tok, "c", 0, L("<unk>"));
    expect_tokens(tok, "a", 0, L("<0x61>"));
    expect_tokens(tok, "\n", 0, L("<0x0A>"));
    pissa_tokenizer_free(tok);

    spec prefix = {.tokens = L("a", "##b", "##c", "ab", "abc"), .merges = "[`a ##b`,`ab ##c`]",
                   .model_extra = ",`continuing_subword_prefix`:`##`"};
    tok = spec_tok(&prefix);
    expect_tokens(tok, "ab", 0, L("ab"));
    expect_tokens(tok, "abc", 0, L("abc"));
    pissa_tokenizer_free(tok);

    spec ignore = {.tokens = L(".:.:", "\xc4\xa0" "belirtilen", ".", ":", "bel", "irtilen", "\xc4\xa0", ".:",
                               "belirtilen", ".:.", "be", "l", "ir", "ti", "en", "irtil", "irti", "i", "r", "t", "b",
                               "e", "n"),
                   .merges = "[`. :`,`b e`,`be l`,`i r`,`t i`,`ir ti`,`e n`,`irti l`]",
                   .model_extra = ",`ignore_merges`:true"};
    tok = spec_tok(&ignore);
    expect_tokens(tok, ".:.:", 0, L(".:.:"));
    expect_tokens(tok, "\xc4\xa0" "belirtilen", 0, L("\xc4\xa0" "belirtilen"));
    pissa_tokenizer_free(tok);
    ignore.model_extra = ",`ignore_merges`:false";
    tok = spec_tok(&ignore);
    expect_tokens(tok, ".:.:", 0, L(".:", ".:"));
    expect_tokens(tok, "\xc4\xa0" "belirtilen", 0, L("\xc4\xa0", "bel", "irtil", "en"));
    pissa_tokenizer_free(tok);

    /* equal ranks: the leftmost pair merges first ("aaa" -> "aa" "a") */
    spec ties = {.tokens = L("a", "aa"), .merges = "[`a a`]"};
    tok = spec_tok(&ties);
    expect_tokens(tok, "aaa", 0, L("aa", "a"));
    expect_tokens(tok, "aaaaa", 0, L("aa", "aa", "a"));
    pissa_tokenizer_free(tok);
}

/* The scan merge (short words) and the heap merge (long words) make the same merges. */
static void scan_and_heap_merges_agree_on_random_words(void **state) {
    (void)state;
    /* every string over {a, b, c} of up to 3 letters is a token; merges in a fixed shuffled order */
    const char *letters = "abc";
    char words[64][4];
    const char *tokens[64];
    int n = 0;
    for (int len = 1; len <= 3; len++) {
        int count = len == 1 ? 3 : len == 2 ? 9 : 27;
        for (int k = 0; k < count; k++) {
            int x = k;
            for (int i = len - 1; i >= 0; i--, x /= 3) words[n][i] = letters[x % 3];
            words[n][len] = '\0';
            tokens[n] = words[n];
            n++;
        }
    }
    tokens[n] = NULL;
    pissa__strbuf m = {0};
    uint64_t r = 12345;
    pissa__sb_puts(&m, "[");
    int first = 1;
    for (int pass = 0; pass < 2; pass++) /* all pairs (l, r) with l + r a token: 2-letter results first */
        for (int i = 3; i < n; i++) {
            size_t len = strlen(tokens[i]);
            if ((pass == 0) != (len == 2)) continue;
            for (size_t cut = 1; cut < len; cut++) {
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                if ((r >> 33) % 3 == 0 && len == 3) continue;
                char line[16];
                snprintf(line, sizeof line, "%s`%.*s %s`", first ? "" : ",", (int)cut, tokens[i], tokens[i] + cut);
                pissa__sb_puts(&m, line);
                first = 0;
            }
        }
    pissa__sb_puts(&m, "]");
    spec sp = {.tokens = tokens, .merges = m.p};
    pissa_tokenizer *tok = spec_tok(&sp);
    pissa__hf *t = pissa__tokenizer_hf(tok);
    char word[200];
    for (int trial = 0; trial < 300; trial++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        size_t len = 1 + (r >> 40) % 150;
        for (size_t i = 0; i < len; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            word[i] = letters[(r >> 35) % 3];
        }
        size_t n1, n2;
        t->bpe.scan_max = SIZE_MAX;
        int32_t *scan = encode(tok, word, len, 0, &n1);
        t->bpe.scan_max = 0;
        int32_t *heap = encode(tok, word, len, 0, &n2);
        expect_ids("heap vs scan", (size_t)trial, word, len, heap, n2, scan, n1);
        free(scan);
        free(heap);
    }
    t->bpe.scan_max = 48;
    pissa_tokenizer_free(tok);
    free(m.p);
}

/* ---- decoders (tokenizers' decoders tests) ---- */

static void decoders_chain_like_tokenizers(void **state) {
    (void)state;
    spec fb = {.decoder = "{`type`:`ByteFallback`}",
               .tokens = L("<0x61>", "<0xE5>", "<0x8f>", "<0xab>", "a", "Hey", "friend!", "<0x+F>")};
    pissa_tokenizer *tok = spec_tok(&fb);
    expect_decode(tok, L("Hey", "friend!"), 0, "Heyfriend!");
    expect_decode(tok, L("<0x61>"), 0, "a");
    expect_decode(tok, L("<0xE5>"), 0, "\xef\xbf\xbd");
    expect_decode(tok, L("<0xE5>", "<0x8f>"), 0, "\xef\xbf\xbd\xef\xbf\xbd");  /* one U+FFFD per byte */
    expect_decode(tok, L("<0xE5>", "<0x8f>", "<0xab>"), 0, "\xe5\x8f\xab");   /* 叫 */
    expect_decode(tok, L("<0xE5>", "<0x8f>", "<0xab>", "a"), 0, "\xe5\x8f\xab" "a");
    expect_decode(tok, L("<0xE5>", "<0x8f>", "a"), 0, "\xef\xbf\xbd\xef\xbf\xbd" "a");
    expect_decode(tok, L("<0x+F>"), 0, "\x0f"); /* Rust's from_str_radix takes a sign */
    pissa_tokenizer_free(tok);

    spec strip_h = {.decoder = "{`type`:`Strip`,`content`:`H`,`start`:1,`stop`:0}", .tokens = L("Hey", " friend!", "HHH")};
    tok = spec_tok(&strip_h);
    expect_decode(tok, L("Hey", " friend!", "HHH"), 0, "ey friend!HH");
    pissa_tokenizer_free(tok);
    spec strip_y = {.decoder = "{`type`:`Strip`,`content`:`y`,`start`:0,`stop`:1}", .tokens = L("Hey", " friend!")};
    tok = spec_tok(&strip_y);
    expect_decode(tok, L("Hey", " friend!"), 0, "He friend!");
    pissa_tokenizer_free(tok);

    spec bl = {.decoder = "{`type`:`ByteLevel`}",
               .tokens = L("Hello", "\xc4\xa0my", "\xc4\xa0" "friend", ",", "\xc4\xa0how", "?", "\xc3\xa5", "\xc4\xa0\xe2\x9c\x93")};
    tok = spec_tok(&bl);
    expect_decode(tok, L("Hello", "\xc4\xa0my", "\xc4\xa0" "friend", ",", "\xc4\xa0how", "?"), 0, "Hello my friend, how?");
    /* an incomplete character becomes U+FFFD; a character outside the byte alphabet keeps its token's UTF-8 */
    expect_decode(tok, L("Hello", "\xc3\xa5"), 0, "Hello\xef\xbf\xbd");
    expect_decode(tok, L("\xc4\xa0\xe2\x9c\x93"), 0, "\xc4\xa0\xe2\x9c\x93");
    pissa_tokenizer_free(tok);

    /* Llama-2's chain: Replace, ByteFallback, Fuse, Strip */
    spec llama = {.decoder = "{`type`:`Sequence`,`decoders`:[{`type`:`Replace`,`pattern`:{`String`:`\xe2\x96\x81`},"
                             "`content`:` `},{`type`:`ByteFallback`},{`type`:`Fuse`},{`type`:`Strip`,`content`:` `,"
                             "`start`:1,`stop`:0}]}",
                  .tokens = L("\xe2\x96\x81Hey", "\xe2\x96\x81you", "<0xE6>", "<0x97>", "<0xA5>", "<s>")};
    tok = spec_tok(&llama);
    expect_decode(tok, L("\xe2\x96\x81Hey", "\xe2\x96\x81you", "<0xE6>", "<0x97>", "<0xA5>"), 0, "Hey you\xe6\x97\xa5");
    expect_decode(tok, L("<s>", "\xe2\x96\x81Hey"), 0, "<s> Hey");
    pissa_tokenizer_free(tok);

    /* no decoder: tokens joined by spaces */
    spec none = {.tokens = L("a", "b")};
    tok = spec_tok(&none);
    expect_decode(tok, L("a", "b", "a"), 0, "a b a");
    pissa_tokenizer_free(tok);
}

/* ---- post-processor and the companion files ---- */

static void config_files_special_tokens_template_and_stop_ids(void **state) {
    (void)state;
    spec sp = {.tokens = L("<unk>", "<s>", "</s>", "Hello", " .", "<|eot_id|>", "<pad>", "."),
               .post = "{`type`:`ByteLevel`}", .model_extra = ",`ignore_merges`:true", /* whole pieces are tokens */
               .pre = "{`type`:`Split`,`pattern`:{`String`:` `},`behavior`:`MergedWithNext`,`invert`:false}",
               .added = "[{`content`:`<|eot_id|>`,`special`:true}]",
               .config = "{`bos_token`:{`__type`:`AddedToken`,`content`:`<s>`},`eos_token`:`</s>`,`pad_token`:null,"
                         "`unk_token`:`<unk>`,`tokenizer_class`:`LlamaTokenizerFast`,`add_eos_token`:true,"
                         "`clean_up_tokenization_spaces`:true,`chat_template`:[{`name`:`tool_use`,`template`:`T2`},"
                         "{`name`:`default`,`template`:`{{ bos_token }}`}]}",
               .generation = "{`bos_token_id`:1,`eos_token_id`:[2,6]}"};
    pissa_tokenizer *tok = spec_tok(&sp);
    /* LlamaTokenizerFast rebuilds the post-processor: add_bos_token defaults to true, add_eos_token is true here */
    expect_tokens(tok, "Hello .", 1, L("<s>", "Hello", " .", "</s>"));
    expect_tokens(tok, "Hello .", 0, L("Hello", " ."));
    assert_int_equal(pissa_tokenizer_special_id(tok, PISSA_SPECIAL_BOS), 1);
    assert_int_equal(pissa_tokenizer_special_id(tok, PISSA_SPECIAL_EOS), 2);
    assert_int_equal(pissa_tokenizer_special_id(tok, PISSA_SPECIAL_UNK), 0);
    assert_int_equal(pissa_tokenizer_special_id(tok, PISSA_SPECIAL_PAD), -1);
    assert_string_equal(pissa_tokenizer_special_token(tok, PISSA_SPECIAL_BOS), "<s>");
    assert_null(pissa_tokenizer_special_token(tok, PISSA_SPECIAL_PAD));
    assert_string_equal(pissa_tokenizer_chat_template(tok), "{{ bos_token }}");
    /* eos, generation_config's eos_token_id (6 is <pad>: listed, so it stops), the end-of-turn token */
    const int32_t *stop;
    size_t n_stop;
    pissa_tokenizer_stop_ids(tok, &stop, &n_stop);
    assert_int_equal(n_stop, 3);
    assert_int_equal(stop[0], 2);
    assert_int_equal(stop[1], 6);
    assert_int_equal(stop[2], 5);
    /* the bos/eos/unk of the config become special added tokens, split out before the model */
    assert_true(pissa_tokenizer_is_special(tok, 1) && pissa_tokenizer_is_special(tok, 0));
    expect_tokens(tok, "Hello</s>Hello", 0, L("Hello", "</s>", "Hello"));
    /* no decoder: tokens joined by spaces, then clean_up_tokenization removes the space before "." */
    expect_decode(tok, L("<s>", "Hello", ".", "</s>"), 0, "<s> Hello. </s>");
    expect_decode(tok, L("<s>", "Hello", ".", "</s>"), 1, "Hello.");
    /* explicit BOS and EOS around the encoding without special tokens */
    int32_t ids[8];
    size_t n;
    assert_ok(pissa_tokenizer_encode(tok, "Hello", 5, 1, 1, ids, 8, &n));
    assert_int_equal(n, 3);
    assert_true(ids[0] == 1 && ids[1] == 3 && ids[2] == 2);
    pissa_tokenizer_free(tok);

    /* TemplateProcessing lists ids per special token; a Sequence wraps the earlier processors' output */
    spec tpl = {.tokens = L("a", "[CLS]", "[SEP]", "<bos>"),
                .post = "{`type`:`Sequence`,`processors`:[{`type`:`TemplateProcessing`,`single`:[{`SpecialToken`:"
                        "{`id`:`[CLS]`,`type_id`:0}},{`Sequence`:{`id`:`A`,`type_id`:0}},{`SpecialToken`:{`id`:`[SEP]`,"
                        "`type_id`:0}}],`pair`:[],`special_tokens`:{`[CLS]`:{`id`:`[CLS]`,`ids`:[1],`tokens`:[`[CLS]`]},"
                        "`[SEP]`:{`id`:`[SEP]`,`ids`:[2,2],`tokens`:[`[SEP]`,`[SEP]`]}}},{`type`:`ByteLevel`},"
                        "{`type`:`TemplateProcessing`,`single`:[{`SpecialToken`:{`id`:`B`,`type_id`:0}},{`Sequence`:"
                        "{`id`:`A`,`type_id`:0}}],`pair`:[],`special_tokens`:{`B`:{`id`:`B`,`ids`:[3],`tokens`:[`<bos>`]}}}]}"};
    tok = spec_tok(&tpl);
    expect_tokens(tok, "aa", 1, L("<bos>", "[CLS]", "a", "a", "[SEP]", "[SEP]"));
    expect_tokens(tok, "aa", 0, L("a", "a"));
    assert_int_equal(pissa_tokenizer_special_id(tok, PISSA_SPECIAL_BOS), -1); /* no tokenizer_config.json */
    assert_int_equal(pissa_tokenizer_encode(tok, "a", 1, 1, 0, ids, 8, &n), PISSA_ERR_INVALID_ARG);
    pissa_tokenizer_free(tok);

    /* a template kept beside the config (newer transformers) */
    char *dir = tu_tempdir("hftpl");
    spec plain = {.tokens = L("a")};
    char *json = spec_json(&plain), *path = tu_path(dir, "tokenizer.json"), *jinja = tu_path(dir, "chat_template.jinja");
    tu_write_bytes(path, json, strlen(json));
    tu_write_bytes(jinja, "{{ messages }}", 14);
    assert_ok(pissa_tokenizer_load(path, 0, &tok));
    assert_string_equal(pissa_tokenizer_chat_template(tok), "{{ messages }}");
    pissa_tokenizer_free(tok);
    tu_rmtree(dir);
    free(dir);
    free(json);
    free(path);
    free(jinja);
}

/* ---- refusals and hostile files ---- */

static void expect_refusal(const spec *sp, pissa_status want, const char *needle1, const char *needle2) {
    pissa_tokenizer *tok = NULL;
    pissa_status st = load_spec(sp, &tok);
    if (st != want || !strstr(pissa_last_error(), needle1) || (needle2 && !strstr(pissa_last_error(), needle2)))
        fail_msg("want %s naming \"%s\" %s, got %s: %s", pissa_status_name(want), needle1, needle2 ? needle2 : "",
                 pissa_status_name(st), pissa_last_error());
    assert_null(tok);
}

static void unsupported_components_are_refused_by_name(void **state) {
    (void)state;
    spec sp = {.tokens = L("a", "b")};
    spec x = sp;
    x.normalizer = "{`type`:`Sequence`,`normalizers`:[{`type`:`NFC`},{`type`:`BertNormalizer`}]}";
    expect_refusal(&x, PISSA_ERR_UNSUPPORTED, "normalizer.normalizers[1]", "BertNormalizer");
    x = sp;
    x.pre = "{`type`:`Sequence`,`pretokenizers`:[{`type`:`UnicodeScripts`}]}";
    expect_refusal(&x, PISSA_ERR_UNSUPPORTED, "pre_tokenizer.pretokenizers[0]", "UnicodeScripts");
    x = sp;
    x.post = "{`type`:`RobertaProcessing`}";
    expect_refusal(&x, PISSA_ERR_UNSUPPORTED, "post_processor", "RobertaProcessing");
    x = sp;
    x.decoder = "{`type`:`Sequence`,`decoders`:[{`type`:`Fuse`},{`type`:`CTC`}]}";
    expect_refusal(&x, PISSA_ERR_UNSUPPORTED, "decoder.decoders[1]", "CTC");
    x = sp;
    x.model_extra = ",`dropout`:0.1";
    expect_refusal(&x, PISSA_ERR_UNSUPPORTED, "model.dropout", NULL);
    x = sp;
    x.pre = "{`type`:`Split`,`pattern`:{`Regex`:`a{2}+`},`behavior`:`Isolated`,`invert`:false}";
    expect_refusal(&x, PISSA_ERR_UNSUPPORTED, "pre_tokenizer.pattern.Regex", "interval");
    x.pre = "{`type`:`Split`,`pattern`:{`Regex`:`[a[b]]`},`behavior`:`Isolated`,`invert`:false}";
    expect_refusal(&x, PISSA_ERR_UNSUPPORTED, "pre_tokenizer.pattern.Regex", "nested");
    x.pre = "{`type`:`Split`,`pattern`:{`Regex`:`(a`},`behavior`:`Isolated`,`invert`:false}";
    expect_refusal(&x, PISSA_ERR_FORMAT, "pre_tokenizer.pattern.Regex", "invalid regex");
    /* an added token longer than the search is allowed to walk */
    char long_token[1200];
    memset(long_token, 'x', sizeof long_token);
    memcpy(long_token, "[{`content`:`", 13);
    memcpy(long_token + sizeof long_token - 4, "`}]", 4);
    x = sp;
    x.added = long_token;
    expect_refusal(&x, PISSA_ERR_UNSUPPORTED, "longer than 1024 bytes", NULL);
    /* other models */
    char *dir = tu_tempdir("hfmodel");
    char *path = tu_path(dir, "tokenizer.json");
    const char *models[] = {"{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}}",
                            "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}",
                            "{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}}",
                            "{\"version\": \"2.0\", \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}"};
    const char *names[] = {"Unigram", "WordPiece", "WordLevel", "version"};
    for (int i = 0; i < 4; i++) {
        pissa_tokenizer *tok = NULL;
        tu_write_bytes(path, models[i], strlen(models[i]));
        assert_int_equal(pissa_tokenizer_load(path, 0, &tok), PISSA_ERR_UNSUPPORTED);
        assert_non_null(strstr(pissa_last_error(), names[i]));
    }
    tu_rmtree(dir);
    free(dir);
    free(path);
}

static void malformed_and_hostile_files_fail_cleanly(void **state) {
    (void)state;
    spec sp = {.tokens = L("a", "b", "ab")};
    spec x = sp;
    /* An empty-match Replace inserts its content at every position (as tokenizers and transformers.js do); three in
     * a Sequence multiply the text by 21 each (fuzz_hf_tokenizer's 2.4 GB input had more): refused at 64x + 4 KiB. */
#define EMPTY_REPLACE "{`type`:`Replace`,`pattern`:{`String`:``},`content`:`NNNNNNNNNNNNNNNNNNNN`}"
    x.normalizer = "{`type`:`Sequence`,`normalizers`:[" EMPTY_REPLACE "," EMPTY_REPLACE "," EMPTY_REPLACE "]}";
#undef EMPTY_REPLACE
    pissa_tokenizer *grow = spec_tok(&x);
    int32_t few[64];
    size_t n_few;
    assert_int_equal(pissa_tokenizer_encode_text(grow, "ab", 2, 0, few, 64, &n_few), PISSA_ERR_UNSUPPORTED);
    assert_non_null(strstr(pissa_last_error(), "normalizer 2 grew a text of 2 bytes past 4224 bytes"));
    pissa_tokenizer_free(grow);
    x = sp;
    x.merges = "[`a c`]";
    expect_refusal(&x, PISSA_ERR_FORMAT, "model.merges[0]", "\"c\"");
    x.merges = "[`b a`]";
    expect_refusal(&x, PISSA_ERR_FORMAT, "model.merges[0]", "\"ba\"");
    x.merges = "[`a b`, `a  b`]";
    expect_refusal(&x, PISSA_ERR_FORMAT, "model.merges[1]", NULL);
    x.merges = "[`a b`, 7]";
    expect_refusal(&x, PISSA_ERR_FORMAT, "model.merges[1]", NULL);
    x = sp;
    x.model_extra = ",`unk_token`:`<unk>`";
    expect_refusal(&x, PISSA_ERR_FORMAT, "model.unk_token", NULL);
    x = sp;
    x.added = "{`content`:`x`}";
    expect_refusal(&x, PISSA_ERR_FORMAT, "added_tokens", NULL);
    x.added = "[{`content`:7}]";
    expect_refusal(&x, PISSA_ERR_FORMAT, "added_tokens[0].content", NULL);
    x = sp;
    x.pre = "{`type`:`Split`,`pattern`:{`Regex`:`a`},`behavior`:`Isolated`}";
    expect_refusal(&x, PISSA_ERR_FORMAT, "pre_tokenizer.invert", NULL);
    x.pre = "{`type`:`Split`,`pattern`:{`Regex`:`a`},`behavior`:`Sideways`,`invert`:false}";
    expect_refusal(&x, PISSA_ERR_FORMAT, "pre_tokenizer.behavior", NULL);
    x.pre = "{`type`:`Metaspace`,`replacement`:`ab`}";
    expect_refusal(&x, PISSA_ERR_FORMAT, "pre_tokenizer.replacement", "single character");
    x.pre = "{`type`:`Metaspace`,`replacement`:`_`,`add_prefix_space`:false,`prepend_scheme`:`always`}";
    expect_refusal(&x, PISSA_ERR_FORMAT, "pre_tokenizer.prepend_scheme", NULL);
    x = sp;
    x.decoder = "{`type`:`Strip`,`content`:` `,`start`:-1,`stop`:0}";
    expect_refusal(&x, PISSA_ERR_FORMAT, "decoder.start", NULL);
    x = sp;
    x.post = "{`type`:`TemplateProcessing`,`single`:[{`SpecialToken`:{`id`:`X`,`type_id`:0}},{`Sequence`:{`id`:`A`}}],"
             "`special_tokens`:{`X`:{`id`:`X`,`ids`:[999999]}}}";
    expect_refusal(&x, PISSA_ERR_FORMAT, "post_processor.special_tokens", NULL);
    x = sp;
    x.config = "{`bos_token`: 7}";
    expect_refusal(&x, PISSA_ERR_FORMAT, "tokenizer_config.json", "bos_token");
    x.config = "{`bos_token`: ";
    expect_refusal(&x, PISSA_ERR_FORMAT, "tokenizer_config.json", "not valid JSON");
    /* text after the object, which Python's json.load refuses ("Extra data"), in each of the three files */
    x.config = "{`bos_token`: `a`} {`eos_token`: `b`}";
    expect_refusal(&x, PISSA_ERR_FORMAT, "tokenizer_config.json", "trailing characters");
    x = sp;
    x.generation = "{`eos_token_id`: 1}]";
    expect_refusal(&x, PISSA_ERR_FORMAT, "generation_config.json", "trailing characters");
    x = sp;
    x.generation = "{`eos_token_id`: `x`}";
    expect_refusal(&x, PISSA_ERR_FORMAT, "generation_config.json", "eos_token_id");

    /* ids: a huge one is refused before anything is allocated for it; two tokens on one id are refused */
    const char *const huge[] = {"a", NULL};
    spec h = {.tokens = huge, .model_extra = ""};
    char *json = spec_json(&h);
    char *p = strstr(json, "\"a\": 0");
    assert_non_null(p);
    char *dir = tu_tempdir("hfhostile"), *path = tu_path(dir, "tokenizer.json");
    const char *ids[] = {"2000000000", "-1", "1.5", "\"0\"", "1e300"};
    for (int i = 0; i < 5; i++) {
        pissa__strbuf b = {0};
        pissa__sb_put(&b, json, (size_t)(p - json) + 5);
        pissa__sb_puts(&b, ids[i]);
        pissa__sb_puts(&b, p + 6);
        tu_write_bytes(path, b.p, b.n);
        pissa_tokenizer *tok = NULL;
        assert_int_equal(pissa_tokenizer_load(path, 0, &tok), PISSA_ERR_FORMAT);
        assert_non_null(strstr(pissa_last_error(), "model.vocab[\"a\"]"));
        free(b.p);
    }
    const char *dup = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}";
    tu_write_bytes(path, dup, strlen(dup));
    pissa_tokenizer *tok = NULL;
    assert_int_equal(pissa_tokenizer_load(path, 0, &tok), PISSA_ERR_FORMAT);
    /* an id beyond the model's vocabulary */
    spec small = {.tokens = L("a", "b", "c")};
    char *j2 = spec_json(&small);
    tu_write_bytes(path, j2, strlen(j2));
    assert_int_equal(pissa_tokenizer_load(path, 2, &tok), PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), "outside the model's vocabulary"));
    assert_ok(pissa_tokenizer_load(path, 3, &tok));
    pissa_tokenizer_free(tok);

    /* every truncation of a valid file fails with PISSA_ERR_FORMAT (or loads, for the whole file) */
    spec full = {.tokens = L("a", "b", "ab"), .merges = "[`a b`]", .normalizer = "{`type`:`NFC`}",
                 .pre = "{`type`:`ByteLevel`,`add_prefix_space`:false}", .decoder = "{`type`:`ByteLevel`}",
                 .added = "[{`id`:3,`content`:`<s>`,`special`:true}]"};
    char *j3 = spec_json(&full);
    size_t n3 = strlen(j3);
    for (size_t cut = 0; cut < n3; cut++) {
        tu_write_bytes(path, j3, cut);
        pissa_status st = pissa_tokenizer_load(path, 0, &tok);
        if (st != PISSA_ERR_FORMAT) fail_msg("the file cut at byte %zu of %zu gives %s", cut, n3, pissa_status_name(st));
    }
    tu_write_bytes(path, j3, n3);
    assert_ok(pissa_tokenizer_load(path, 0, &tok));
    pissa_tokenizer_free(tok);
    char *trailing = malloc(n3 + 3);
    memcpy(trailing, j3, n3);
    memcpy(trailing + n3, " x", 3);
    tu_write_bytes(path, trailing, n3 + 2);
    assert_int_equal(pissa_tokenizer_load(path, 0, &tok), PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), "trailing characters"));
    free(trailing);

    /* not UTF-8, a NUL escape, nesting deeper than the JSON parser takes */
    const char *bad_utf8 = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\xff\": 0}, \"merges\": []}}";
    tu_write_bytes(path, bad_utf8, strlen(bad_utf8));
    assert_int_equal(pissa_tokenizer_load(path, 0, &tok), PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), "UTF-8"));
    const char *nul = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\\u0000\": 0}, \"merges\": []}}";
    tu_write_bytes(path, nul, strlen(nul));
    assert_int_equal(pissa_tokenizer_load(path, 0, &tok), PISSA_ERR_UNSUPPORTED);
    pissa__strbuf deep = {0};
    pissa__sb_puts(&deep, "{\"normalizer\": ");
    for (int i = 0; i < 3000; i++) pissa__sb_puts(&deep, "{\"type\": \"Sequence\", \"normalizers\": [");
    tu_write_bytes(path, deep.p, deep.n);
    assert_int_equal(pissa_tokenizer_load(path, 0, &tok), PISSA_ERR_FORMAT);
    free(deep.p);
    tu_rmtree(dir);
    free(dir);
    free(path);
    free(json);
    free(j2);
    free(j3);
}

static void invalid_text_and_ids_are_refused(void **state) {
    (void)state;
    spec sp = {.tokens = ascii};
    pissa_tokenizer *tok = spec_tok(&sp);
    const char *bad[] = {"ab\xff", "a\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "abc\xe2\x82", "\x80"};
    size_t at[] = {2, 1, 0, 0, 3, 0};
    for (int i = 0; i < 6; i++) {
        size_t n;
        int32_t ids[16];
        assert_int_equal(pissa_tokenizer_encode_text(tok, bad[i], strlen(bad[i]), 1, ids, 16, &n),
                         PISSA_ERR_INVALID_ARG);
        char where[32];
        snprintf(where, sizeof where, "byte %zu", at[i]);
        assert_non_null(strstr(pissa_last_error(), where));
    }
    /* decoding: a negative id is an error, an id without a token is skipped (as tokenizers does) */
    int32_t ids[3] = {33, -1, 34};
    char buf[16];
    size_t len;
    assert_int_equal(pissa_tokenizer_decode_text(tok, ids, 3, 0, buf, 16, &len), PISSA_ERR_INVALID_ARG);
    ids[1] = 5000;
    assert_ok(pissa_tokenizer_decode_text(tok, ids, 3, 0, buf, 16, &len));
    assert_string_equal(buf, "A B");
    /* the capacity contract: a size query, then too small, then exact */
    size_t n;
    assert_int_equal(pissa_tokenizer_encode_text(tok, "hello", 5, 1, NULL, 0, &n), PISSA_ERR_INVALID_ARG);
    assert_int_equal(n, 5);
    int32_t out[5];
    assert_int_equal(pissa_tokenizer_encode_text(tok, "hello", 5, 1, out, 4, &n), PISSA_ERR_INVALID_ARG);
    assert_ok(pissa_tokenizer_encode_text(tok, "hello", 5, 1, out, 5, &n));
    pissa_tokenizer_free(tok);
}

/* ---- the kind of file, and the llama2.c side of the shared API ---- */

static void kind_is_told_by_content(void **state) {
    (void)state;
    char *dir = tu_tempdir("hfkind");
    /* a llama2.c file whose first byte is '{': max_token_length 123 */
    pissa__strbuf b = {0};
    int32_t max_len = 123;
    pissa__sb_put(&b, (const char *)&max_len, 4);
    for (int i = 0; i < 259; i++) {
        char piece[8];
        int len = i < 3 ? 1 : 6;
        if (i < 3) snprintf(piece, sizeof piece, "%c", "ubE"[i]);
        else snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        float score = 0;
        pissa__sb_put(&b, (const char *)&score, 4);
        pissa__sb_put(&b, (const char *)&len, 4);
        pissa__sb_put(&b, piece, (size_t)len);
    }
    char *bin = tu_path(dir, "tok.json");
    tu_write_bytes(bin, b.p, b.n);
    pissa_tokenizer *tok;
    assert_ok(pissa_tokenizer_load(bin, 0, &tok));
    assert_int_equal(pissa_tokenizer_get_kind(tok), PISSA_TOKENIZER_LLAMA2C);
    assert_int_equal(pissa_tokenizer_special_id(tok, PISSA_SPECIAL_BOS), 1);
    assert_int_equal(pissa_tokenizer_special_id(tok, PISSA_SPECIAL_PAD), -1);
    assert_null(pissa_tokenizer_special_token(tok, PISSA_SPECIAL_EOS));
    assert_null(pissa_tokenizer_chat_template(tok));
    assert_true(pissa_tokenizer_is_special(tok, 2) && !pissa_tokenizer_is_special(tok, 3));
    assert_int_equal(pissa_tokenizer_token_to_id(tok, "<0x41>", 6), 'A' + 3);
    const int32_t *stop;
    size_t n_stop;
    pissa_tokenizer_stop_ids(tok, &stop, &n_stop);
    assert_true(n_stop == 1 && stop[0] == 1);
    int32_t ids[16];
    size_t n;
    assert_ok(pissa_tokenizer_encode_text(tok, "A", 1, 1, ids, 16, &n));
    assert_true(n == 3 && ids[0] == 1); /* BOS, the dummy-prefix " " byte token, A */
    pissa_tokenizer_free(tok);
    /* a folder without tokenizer.json */
    assert_int_equal(pissa_tokenizer_load(dir, 0, &tok), PISSA_ERR_NOT_FOUND);
    free(b.p);
    free(bin);
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_behaviours_cut_as_tokenizers_does),
        cmocka_unit_test(metaspace_prepend_schemes_and_split),
        cmocka_unit_test(digits_punctuation_whitespace_and_byte_level),
        cmocka_unit_test(normalizers_follow_unicode_and_tokenizers),
        cmocka_unit_test(added_tokens_flags_split_like_tokenizers),
        cmocka_unit_test(bpe_merges_unk_byte_fallback_and_ignore_merges),
        cmocka_unit_test(scan_and_heap_merges_agree_on_random_words),
        cmocka_unit_test(decoders_chain_like_tokenizers),
        cmocka_unit_test(config_files_special_tokens_template_and_stop_ids),
        cmocka_unit_test(unsupported_components_are_refused_by_name),
        cmocka_unit_test(malformed_and_hostile_files_fail_cleanly),
        cmocka_unit_test(invalid_text_and_ids_are_refused),
        cmocka_unit_test(kind_is_told_by_content),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
