// Render the \( ... \) and \[ ... \] that pymdownx.arithmatex leaves, on every page Material shows.
document$.subscribe(() => {
  renderMathInElement(document.body, {
    delimiters: [{left: "\\[", right: "\\]", display: true}, {left: "\\(", right: "\\)", display: false}],
  });
});
