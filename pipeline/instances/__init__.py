"""output.kind instances: numbered objects, block by block, merged across block borders.

    merge          block grid, provisional ids, touching pairs, the merge table (pure)
    fragments      one block's provisional ids: components or watershed, the halo rule (pure)
    objects        block summaries and their merge into a plane's objects (pure)
    instancepass   the pass: what workers do (summarise, relabel) and its driving on the driver

See docs/instances.md.
"""
