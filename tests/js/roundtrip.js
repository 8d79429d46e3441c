// Reads a JSON list of NoteSequences (as magenta-api answers them) on stdin, writes each through
// Magenta.js's own MIDI writer and reads it back: prints [{pitches, starts, drums}] for the test to compare.
const core = require("@magenta/music/node/core");

const watchdog = setTimeout(() => {
  console.error("Magenta.js hung on this input");
  process.exit(3);
}, 20000);

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const out = JSON.parse(input).map((seq) => {
    const back = core.midiToSequenceProto(core.sequenceProtoToMidi(seq));
    return {
      pitches: back.notes.map((n) => n.pitch),
      starts: back.notes.map((n) => n.startTime || 0),
      drums: back.notes.map((n) => Boolean(n.isDrum)),
    };
  });
  clearTimeout(watchdog);
  process.stdout.write(JSON.stringify(out));
});
