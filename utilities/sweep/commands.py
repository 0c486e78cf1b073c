"""Read a commands file the way bash reads it: `\\` continuations, comments, `$var` expansion, shlex words.

Accepted lines: `python[3] <script>.py args...` (the runs), `NAME=value` / `export NAME=value`
(variables for the lines below), and the no-op builtins `:` and `set` (e.g. the `${datapath:?...}`
guard of Revisit_Runs.sh). Anything else is reported as one error naming the line: a scheduler that
silently drops a `for` loop would run a different sweep than the file describes.
"""
import dataclasses
import os
import re
import shlex

PYTHON = re.compile(r'^(?:.*/)?python(?:\d+(?:\.\d+)*)?$')
ASSIGNMENT = re.compile(r'^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$', re.S)
NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')


class CommandsError(Exception):
    """Bad commands file or variable: reported as one line."""


@dataclasses.dataclass
class Command:
    """One run of the file: `script` is the trainer (`main.py`), `args` its arguments after expansion."""
    line: int
    script: str
    args: list
    text: str
    interpreter: str = 'python'

    def argv(self, python):
        """A bare `python`/`python3` becomes `python` (the launcher's own interpreter); a path is kept."""
        return [python if '/' not in self.interpreter else self.interpreter, self.script] + list(self.args)


def logical_lines(text):
    """(first physical line number, text) with `\\`-newline removed as bash does (comments do not continue)."""
    result, buffer, start = [], '', None
    for number, raw in enumerate(text.splitlines(), 1):
        if start is None:
            start = number
        if buffer == '' and raw.lstrip().startswith('#'):
            result.append((number, raw))
            start = None
            continue
        trailing = len(raw) - len(raw.rstrip('\\'))
        if trailing % 2 == 1:
            buffer += raw[:-1]
            continue
        result.append((start, buffer + raw))
        buffer, start = '', None
    if buffer:
        result.append((start, buffer))
    return result


def expand(text, variables, line):
    """Expand `$name`, `${name}`, `${name:-default}`, `${name:?msg}` outside single quotes.

    Unquoted values are inserted raw (bash word-splits them too); inside double quotes they are
    escaped so that they stay one word.
    """
    out, i, quote = [], 0, None
    while i < len(text):
        char = text[i]
        if quote == "'":
            out.append(char)
            quote = None if char == "'" else quote
            i += 1
            continue
        if char == '\\' and i + 1 < len(text):
            out.append(text[i:i + 2])
            i += 2
            continue
        if char in '"\'' and (quote is None or quote == char):
            quote = None if quote == char else char
            out.append(char)
            i += 1
            continue
        if char == '$':
            name, default, end = parse_reference(text, i, line)
            if name is None:
                out.append(char)
                i += 1
                continue
            if name in variables:
                value = variables[name]
            elif default is not None:
                value = expand(default, variables, line)
            else:
                raise CommandsError('line {}: ${} is not set (export it or give --set {}=VALUE)'
                                    .format(line, name, name))
            if quote == '"':
                value = re.sub(r'(["\\$`])', r'\\\1', value)
            out.append(value)
            i = end
            continue
        out.append(char)
        i += 1
    return ''.join(out)


def parse_reference(text, i, line):
    """(name, default or None, index after the reference) of the `$` at text[i]; name None if not one."""
    if text.startswith('${', i):
        end = text.find('}', i)
        if end < 0:
            raise CommandsError('line {}: unterminated ${{'.format(line))
        body = text[i + 2:end]
        match = NAME.match(body)
        if not match:
            raise CommandsError('line {}: unsupported expansion ${{{}}}'.format(line, body))
        rest = body[match.end():]
        if rest == '':
            return match.group(0), None, end + 1
        if rest.startswith(':-') or rest.startswith('-'):
            return match.group(0), rest.split('-', 1)[1], end + 1
        if rest.startswith(':?') or rest.startswith('?'):
            return match.group(0), None, end + 1
        raise CommandsError('line {}: unsupported expansion ${{{}}}'.format(line, body))
    match = NAME.match(text, i + 1)
    if not match:
        return None, None, i + 1
    return match.group(0), None, match.end()


def parse_commands(text, variables=None):
    """Every run of a commands file, in file order. `variables` (name -> value) seeds the expansion."""
    variables = dict(variables or {})
    commands = []
    for number, logical in logical_lines(text):
        stripped = logical.strip()
        if not stripped or stripped.startswith('#'):
            continue
        assignment = ASSIGNMENT.match(stripped)
        if assignment:
            words = split_words(expand(assignment.group(2), variables, number), number)
            if len(words) <= 1:
                variables[assignment.group(1)] = words[0] if words else ''
                continue
        if stripped.split()[0] in (':', 'set'):
            continue
        if not PYTHON.match(stripped.split()[0]):
            raise CommandsError('line {}: not a `python <script>.py ...` command nor a variable assignment: {}'
                                .format(number, stripped[:80]))
        words = split_words(expand(logical, variables, number), number)
        if len(words) < 2 or not words[1].endswith('.py'):
            raise CommandsError('line {}: not a `python <script>.py ...` command nor a variable assignment: {}'
                                .format(number, stripped[:80]))
        if any(word in ('&', '&&', ';', '|', '||') for word in words):
            raise CommandsError('line {}: shell operators are not supported in a sweep line'.format(number))
        commands.append(Command(line=number, script=words[1], args=words[2:], text=stripped, interpreter=words[0]))
    return commands


def split_words(text, line):
    try:
        return shlex.split(text, comments=True, posix=True)
    except ValueError as error:
        raise CommandsError('line {}: {}'.format(line, error))


def read_commands(path, variables=None):
    """Commands of the file at `path`; the environment, then `variables`, then the file's own assignments."""
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError as error:
        raise CommandsError('{}: {}'.format(path, error.strerror))
    seeded = dict(os.environ)
    seeded.update(variables or {})
    return parse_commands(text, seeded)
