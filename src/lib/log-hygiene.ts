/**
 * What text from builds and repositories may look like once it is in the system: log
 * lines, commit subjects and authors come from whoever can push, and are later shown
 * in terminals (`curl …/log`, the CLI) and browsers. Pure functions, no I/O.
 */

/** A single log line keeps this many characters (UTF-16 code units); the rest is cut. */
export const MAX_LOG_LINE = 16 * 1024;
/** Commit subjects and authors keep this many characters. */
export const MAX_SUBJECT = 500;
export const MAX_AUTHOR = 200;

/**
 * Escape sequences and control characters, one alternative per kind, matched left to
 * right so every ESC is either the start of a match or inside one:
 * 1. CSI: ESC [ parameters (0x30–0x3F) intermediates (0x20–0x2F) final (0x40–0x7E);
 * 2. OSC, DCS, SOS, PM, APC strings: ESC ] P X ^ _ … up to BEL, ST (ESC \) or the end
 *    of the line (a terminal would swallow the rest of the line too);
 * 3. any other ESC, with its intermediates and final byte if present;
 * 4. C0 controls but tab, DEL, and C1 controls (U+0080–U+009F: 8-bit CSI, OSC, …).
 */
// oxlint-disable-next-line no-control-regex -- matching control characters is this module's job
const CONTROL = /\x1b\[([0-?]*)([ -/]*)([@-~])|\x1b[\]PX^_][\s\S]*?(?:\x07|\x1b\\|$)|\x1b[ -/]*[0-~]?|[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;
/** Cheap pre-check: most lines hold no control character at all. */
// oxlint-disable-next-line no-control-regex -- as above
const ANY_CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/;
/** SGR parameters: numbers separated by `;` (or `:` for 38:2::r:g:b colours). */
const SGR_PARAMS = /^[0-9;:]*$/;

/**
 * A log line as it is stored: cut to MAX_LOG_LINE characters (the start is kept, and
 * what was cut is said), and stripped of every escape sequence and control character
 * except SGR colour/style sequences (`ESC[…m`) and tab. So a build cannot write to the
 * clipboard (OSC 52), set a terminal's title, move its cursor or clear its screen when
 * someone reads the log in a terminal; colours survive.
 */
export function sanitizeLogLine(line: string): string {
  let kept = line;
  let cut = 0;
  if (line.length > MAX_LOG_LINE) {
    let end = MAX_LOG_LINE;
    // Never split a surrogate pair: a lone half is not text.
    if (isHighSurrogate(line.charCodeAt(end - 1))) end--;
    kept = line.slice(0, end);
    cut = line.length - end;
  }
  if (ANY_CONTROL.test(kept)) kept = kept.replace(CONTROL, keepSgr);
  return cut > 0 ? `${kept} [… ${cut.toLocaleString('en-US')} more characters of this line cut: log lines keep ${MAX_LOG_LINE.toLocaleString('en-US')}]` : kept;
}

/**
 * A commit subject or author name as it is stored and shown: one line, no escape
 * sequences or control characters at all (not even colours), at most `max` characters.
 * `alreadyCut` says the text was cut before it got here (git truncated it).
 */
export function cleanSubject(text: string, max = MAX_SUBJECT, alreadyCut = false): string {
  // The first line only; a long one is cut before the (linear) clean-up, not after.
  const nl = text.search(/[\r\n]/);
  let line = nl >= 0 ? text.slice(0, nl) : text;
  let cut = alreadyCut;
  if (line.length > max) {
    let end = max;
    if (isHighSurrogate(line.charCodeAt(end - 1))) end--;
    line = line.slice(0, end);
    cut = true;
  }
  if (ANY_CONTROL.test(line)) line = line.replace(CONTROL, '');
  line = line.trim();
  return cut ? `${line} [… cut at ${max} characters]` : line;
}

function keepSgr(match: string, params: string | undefined, intermediates: string | undefined, final: string | undefined): string {
  return final === 'm' && !intermediates && SGR_PARAMS.test(params ?? '') ? match : '';
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
