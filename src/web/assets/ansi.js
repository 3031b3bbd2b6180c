// ANSI colour sequences to HTML through ansi_up (which escapes all text), with classes
// instead of inline styles so the Content-Security-Policy needs no 'unsafe-inline'.
// Shared by the server and the browser: the caller passes ansi_up's class.

const NAMED = [
  ['ansi-black', [0, 0, 0]], ['ansi-red', [187, 0, 0]], ['ansi-green', [0, 187, 0]], ['ansi-yellow', [187, 187, 0]],
  ['ansi-blue', [0, 0, 187]], ['ansi-magenta', [187, 0, 187]], ['ansi-cyan', [0, 187, 187]], ['ansi-white', [255, 255, 255]],
  ['ansi-bright-black', [85, 85, 85]], ['ansi-bright-red', [255, 85, 85]], ['ansi-bright-green', [0, 255, 0]], ['ansi-bright-yellow', [255, 255, 85]],
  ['ansi-bright-blue', [85, 85, 255]], ['ansi-bright-magenta', [255, 85, 255]], ['ansi-bright-cyan', [85, 255, 255]], ['ansi-bright-white', [255, 255, 255]],
];

/** 256-colour and true-colour values get the nearest of the 16 named colours. */
function nearest(rgb) {
  let best = NAMED[0][0];
  let bestD = Infinity;
  for (const [name, [r, g, b]] of NAMED) {
    const d = (r - rgb[0]) ** 2 + (g - rgb[1]) ** 2 + (b - rgb[2]) ** 2;
    if (d < bestD) {
      bestD = d;
      best = name;
    }
  }
  return best;
}

/**
 * An ansi_up instance that renders with classes only (ansi-red-fg, ansi-b, …) and never
 * makes links. Its parser keeps state across calls, as a terminal does across lines.
 * @param {any} AnsiUp ansi_up's class
 * @returns {{ ansi_to_html(text: string): string }}
 */
export function classAnsi(AnsiUp) {
  class ClassAnsi extends AnsiUp {
    transform_to_html(fragment) {
      const text = this.escape_txt_for_html(fragment.text);
      if (text.length === 0) return text;
      const classes = [];
      if (fragment.bold) classes.push('ansi-b');
      if (fragment.faint) classes.push('ansi-f');
      if (fragment.italic) classes.push('ansi-i');
      if (fragment.underline) classes.push('ansi-u');
      if (fragment.fg) classes.push(`${fragment.fg.class_name === 'truecolor' ? nearest(fragment.fg.rgb) : fragment.fg.class_name}-fg`);
      if (fragment.bg) classes.push(`${fragment.bg.class_name === 'truecolor' ? nearest(fragment.bg.rgb) : fragment.bg.class_name}-bg`);
      return classes.length ? `<span class="${classes.join(' ')}">${text}</span>` : text;
    }
  }
  const a = new ClassAnsi();
  a.use_classes = true;
  a.escape_html = true;
  a.url_allowlist = {};
  return {
    ansi_to_html(text) {
      // Most build output has no escape sequence: with no colour carried over from an
      // earlier line, escaping is all ansi_up would do (and it costs far less alone).
      if (!text.includes('\u001b') && !a._buffer && !a.fg && !a.bg && !a.bold && !a.faint && !a.italic && !a.underline) return a.escape_txt_for_html(text);
      return a.ansi_to_html(text);
    },
  };
}
