"""Cross-site scripting payloads placed in every user-controlled field by the browser tests.

Each one, if it ever ran, would set ``window.__xss`` or open a dialog; the test watches both.
Sources: the OWASP XSS filter evasion cheat sheet, PortSwigger's XSS cheat sheet and known
mutation-XSS (mXSS) and Markdown tricks.
"""

from __future__ import annotations

SET = "window.__xss=1"

PAYLOADS: list[str] = [
    # Script tags and their disguises
    f"<script>{SET}</script>",
    f"<SCRIPT>{SET}</SCRIPT>",
    f"<script src=data:,{SET}></script>",
    f"<scr<script>ipt>{SET}</scr</script>ipt>",
    f"<script/x>{SET}</script>",
    f"<<script>{SET};//<</script>",
    f"</title><script>{SET}</script>",
    f"</textarea><script>{SET}</script>",
    f"\"><script>{SET}</script>",
    f"'><script>{SET}</script>",
    # Event handlers
    f"<img src=x onerror={SET}>",
    f"<img src=x onerror=\"{SET}\">",
    f"<IMG SRC=x OnErRoR={SET}>",
    f"<img/src=x/onerror={SET}>",
    f"<svg onload={SET}>",
    f"<svg/onload={SET}>",
    f"<body onload={SET}>",
    f"<input autofocus onfocus={SET}>",
    f"<details open ontoggle={SET}>",
    f"<video><source onerror={SET}></video>",
    f"<audio src=x onerror={SET}>",
    f"<iframe srcdoc=\"<script>parent.{SET}</script>\"></iframe>",
    f"<marquee onstart={SET}>x</marquee>",
    f"<div style=\"width:expression({SET})\">x</div>",
    f"\" onmouseover=\"{SET}\" x=\"",
    f"' autofocus onfocus='{SET}' x='",
    # javascript:, data: and vbscript: URLs
    f"<a href=\"javascript:{SET}\">click</a>",
    f"<a href=\"JaVaScRiPt:{SET}\">click</a>",
    f"<a href=\"&#106;avascript:{SET}\">click</a>",
    f"<a href=\"java&#x09;script:{SET}\">click</a>",
    f"<a href=\" javascript:{SET}\">click</a>",
    "<a href=\"data:text/html;base64,PHNjcmlwdD53aW5kb3cuX194c3M9MTwvc2NyaXB0Pg==\">d</a>",
    "<a href=\"vbscript:msgbox(1)\">v</a>",
    f"<iframe src=\"javascript:parent.{SET}\"></iframe>",
    f"<form action=\"javascript:{SET}\"><button>go</button></form>",
    f"<object data=\"javascript:{SET}\"></object>",
    f"<embed src=\"javascript:{SET}\">",
    f"<math><a xlink:href=\"javascript:{SET}\">m</a></math>",
    # SVG
    f"<svg><script>{SET}</script></svg>",
    f"<svg><animate onbegin={SET} attributeName=x dur=1s>",
    f"<svg><a><animate attributeName=href values=javascript:{SET} /><text y=20>s</text></a></svg>",
    f"<svg><foreignObject><img src=x onerror={SET}></foreignObject></svg>",
    f"<svg><use href=\"data:image/svg+xml,<svg id='x' xmlns='http://www.w3.org/2000/svg'><image href='x' onerror='{SET}'/></svg>#x\"/></svg>",
    # Encoded forms
    f"&lt;script&gt;{SET}&lt;/script&gt;",
    f"%3Cscript%3E{SET}%3C/script%3E",
    f"\\u003cscript\\u003e{SET}\\u003c/script\\u003e",
    "<img src=x onerror=&#119;indow.__xss=1>",
    "<img src=x onerror=\"&#x77;&#x69;&#x6e;dow.__xss=1\">",
    f"\u003cimg src=x onerror={SET}\u003e",
    # Mutation XSS (markup that changes meaning when re-parsed)
    f"<noscript><p title=\"</noscript><img src=x onerror={SET}>\">",
    f"<svg></p><style><a id=\"</style><img src=1 onerror={SET}>\">",
    f"<math><mtext><table><mglyph><style><img src=x onerror={SET}>",
    f"<form><math><mtext></form><form><mglyph><svg><mtext><style><path id=\"</style><img onerror={SET} src>\">",
    f"<!--<img src=\"--><img src=x onerror={SET}//\">",
    f"<![CDATA[><img src=x onerror={SET}>]]>",
    f"<xmp><p title=\"</xmp><img src=x onerror={SET}>\">",
    f"<template><img src=x onerror={SET}></template>",
    # Markdown link and image tricks
    f"[click](javascript:{SET})",
    f"[click](JAVASCRIPT:{SET})",
    f"[click](javascript&#58;{SET})",
    f"[click]( javascript:{SET})",
    f"[click](<javascript:{SET}>)",
    f"![img](x \"onerror={SET}\")",
    f"![img](javascript:{SET})",
    f"[ref][1]\n\n[1]: javascript:{SET}",
    f"<javascript:{SET}>",
    f"[a](data:text/html,<script>{SET}</script>)",
    f"[x](https://example.org\" onmouseover=\"{SET})",
    f"![x](https://example.org/a.png\"onerror=\"{SET})",
    # Template and attribute breakouts
    "{{ 7*7 }}{{ config }}{% raw %}",
    "${alert(1)}",
    f"<base href=\"javascript:{SET}//\">",
    f"<meta http-equiv=\"refresh\" content=\"0;url=javascript:{SET}\">",
    f"<link rel=import href=\"data:text/html,<script>{SET}</script>\">",
    "<img src=x onerror=alert(1)>",
    "<script>alert(document.domain)</script>",
]

assert len(PAYLOADS) >= 50
