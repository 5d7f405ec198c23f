#!/usr/bin/env bash
# Re-vendors the console's JavaScript from the npm registry (`npm pack`): cytoscape.js and its
# layered layout cytoscape-dagre (which bundles dagre), each with its licence. The files are
# committed (web/static/vendor), so installing and CI never need npm; run this to upgrade.
set -euo pipefail
cd "$(dirname "$0")/.."
CYTOSCAPE=${CYTOSCAPE:-3.35.0}
CYTOSCAPE_DAGRE=${CYTOSCAPE_DAGRE:-4.0.1}
DAGRE=${DAGRE:-3.0.0}  # bundled inside cytoscape-dagre; packed for its licence only
out=web/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "cytoscape@$CYTOSCAPE" "cytoscape-dagre@$CYTOSCAPE_DAGRE" "@dagrejs/dagre@$DAGRE" >/dev/null)
for package in "cytoscape-$CYTOSCAPE" "cytoscape-dagre-$CYTOSCAPE_DAGRE" "dagrejs-dagre-$DAGRE"; do
    mkdir -p "$work/$package"
    tar xzf "$work/$package.tgz" -C "$work/$package"
done
mkdir -p "$out"
cp "$work/cytoscape-$CYTOSCAPE/package/dist/cytoscape.min.js" "$out/cytoscape.min.js"
cp "$work/cytoscape-$CYTOSCAPE/package/LICENSE" "$out/cytoscape.LICENSE"
cp "$work/cytoscape-dagre-$CYTOSCAPE_DAGRE/package/dist/cytoscape-dagre.min.js" "$out/cytoscape-dagre.min.js"
cp "$work/cytoscape-dagre-$CYTOSCAPE_DAGRE/package/LICENSE" "$out/cytoscape-dagre.LICENSE"
cp "$work/dagrejs-dagre-$DAGRE/package/LICENSE" "$out/dagre.LICENSE"
cat > "$out/VERSIONS" <<VERSIONS
cytoscape $CYTOSCAPE (MIT, cytoscape.LICENSE) https://www.npmjs.com/package/cytoscape
cytoscape-dagre $CYTOSCAPE_DAGRE (MIT, cytoscape-dagre.LICENSE; bundles @dagrejs/dagre, MIT, dagre.LICENSE) https://www.npmjs.com/package/cytoscape-dagre
VERSIONS
echo "vendored into $out:"; ls "$out"
