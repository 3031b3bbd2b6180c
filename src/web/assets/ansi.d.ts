export function classAnsi(AnsiUp: unknown): { ansi_to_html(text: string): string };
